"""Contract tests run over every registered backbone (scikit-learn's parametrize_with_checks)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from autovision.errors import ModelError
from autovision.models.registry import (
    BackboneCfg,
    create_model,
    embed,
    get_backbone_cfg,
    list_backbones,
)

BACKBONES = list_backbones()
PRETRAINED = list_backbones(pretrained=True)
N, CLASSES = 2, 3


def _size(cfg: BackboneCfg) -> int:
    """A small input every backbone accepts (the smallest searched size, at most 64 px)."""
    return min(64, *(cfg.sizes or (cfg.input_size,)))


def _input(cfg: BackboneCfg, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    s = _size(cfg)
    return torch.rand(n, 3, s, s, generator=g) * 4 - 2


def test_registry_lists_the_known_backbones() -> None:
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "compact_cnn"} <= set(
        BACKBONES
    )
    assert set(PRETRAINED) <= set(BACKBONES)
    assert set(PRETRAINED) | set(list_backbones(pretrained=False)) == set(BACKBONES)
    assert "compact_cnn" not in PRETRAINED


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown backbone 'nope'"):
        get_backbone_cfg("nope")
    with pytest.raises(ModelError):
        create_model("nope", num_classes=2)


@pytest.mark.parametrize("name", BACKBONES)
def test_cfg_metadata_is_sane(name: str) -> None:
    cfg = get_backbone_cfg(name)
    assert cfg.name == name
    assert cfg.input_size > 0 and cfg.feature_dim > 0
    assert cfg.sizes, "a backbone names the image sizes worth searching"
    assert list(cfg.sizes) == sorted(set(cfg.sizes)) and all(s > 0 for s in cfg.sizes)
    assert cfg.input_size in cfg.sizes
    assert len(cfg.mean) == 3 and len(cfg.std) == 3
    assert all(0 <= m <= 255 for m in cfg.mean), "mean is in pixel units (0..255)"
    assert all(s > 0 and math.isfinite(s) for s in cfg.std)
    assert cfg.weights_source and cfg.license and cfg.description
    d = cfg.to_dict()
    assert (
        BackboneCfg(
            **{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"]), "sizes": tuple(d["sizes"])}
        )
        == cfg
    )
    json.dumps(d)  # saved in model.json
    with pytest.raises(AttributeError):
        cfg.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", BACKBONES)
def test_forward_shape_no_nan_and_embeddings(name: str) -> None:
    cfg = get_backbone_cfg(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=CLASSES, pretrained=False).eval()
    assert model.autovision_cfg == cfg
    x = _input(cfg)
    with torch.no_grad():
        logits = model(x)
        feats = embed(model, x)
        head = model.forward_head(model.forward_features(x))
    assert logits.shape == (N, CLASSES) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert feats.shape == (N, cfg.feature_dim) and torch.isfinite(feats).all()
    torch.testing.assert_close(head, logits)

    model.train()  # a training step works and gives finite gradients
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", BACKBONES)
def test_num_classes_zero_gives_features(name: str) -> None:
    cfg = get_backbone_cfg(name)
    model = create_model(name, num_classes=0, pretrained=False).eval()
    x = _input(cfg, n=1)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, cfg.feature_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_weights_load(name: str) -> None:
    torch.manual_seed(0)
    random = create_model(name, num_classes=CLASSES, pretrained=False)
    torch.manual_seed(0)
    loaded = create_model(name, num_classes=CLASSES, pretrained=True)
    r_sd, l_sd = random.state_dict(), loaded.state_dict()
    assert r_sd.keys() == l_sd.keys()
    body = [k for k in l_sd if not k.startswith("classifier.") and l_sd[k].is_floating_point()]
    changed = [k for k in body if not torch.equal(r_sd[k], l_sd[k])]
    # every conv/BN tensor of the body comes from the file (a few may coincide, e.g. zeros)
    assert len(changed) >= 0.95 * len(body), f"{len(body) - len(changed)} body weights unchanged"
    bn_vars = [v for k, v in l_sd.items() if k.endswith("running_var")]
    assert bn_vars and not all(torch.equal(v, torch.ones_like(v)) for v in bn_vars)
    # the new head keeps its fresh initialisation, sized for the task
    assert l_sd["classifier.weight"].shape == (CLASSES, get_backbone_cfg(name).feature_dim)
    torch.testing.assert_close(l_sd["classifier.weight"], r_sd["classifier.weight"])


def test_pretrained_flag_is_ignored_for_scratch_backbones() -> None:
    torch.manual_seed(0)
    a = create_model("compact_cnn", num_classes=CLASSES, pretrained=True)
    torch.manual_seed(0)
    b = create_model("compact_cnn", num_classes=CLASSES, pretrained=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
