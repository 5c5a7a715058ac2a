"""``finetune_top`` on cached activations (search/toptune.py)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from autovision.models.registry import create_model
from autovision.search import toptune
from autovision.search.modes import forward_lower, forward_upper, top_split
from autovision.search.prepare import prepare_data
from autovision.search.space import TrialConfig
from autovision.search.trainer import Runtime, TrialPlan, load_checkpoint, predict
from autovision.search.trainer import preprocessing_for as spec_for

CFG = TrialConfig(
    "efficientnet_lite0", "finetune_top", 32, resize="pad", lr=1e-3, epochs=3, batch_size=8
)


def test_the_split_network_is_the_network() -> None:
    model = create_model("efficientnet_lite0", num_classes=3, pretrained=False).eval()
    cut = top_split(model)
    assert cut == len(model.blocks) - 2
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        split = forward_upper(model, forward_lower(model, x, cut), cut)
        assert torch.allclose(split, model(x), atol=1e-5)
    assert top_split(create_model("compact_cnn", num_classes=3, pretrained=False)) is None


def test_which_trials_use_it(workspace, make_dataset, monkeypatch) -> None:
    rt = Runtime.create(workspace, prepare_data(make_dataset(size=32)))
    assert toptune.applies(rt, CFG)
    assert not toptune.applies(rt, CFG.with_(mode="finetune_full"))
    assert not toptune.applies(rt, TrialConfig("compact_cnn", "scratch", 16))
    monkeypatch.setattr(toptune, "CACHE_MAX_BYTES", 1000)  # too many images for the cache
    assert not toptune.applies(rt, CFG)
    eff = toptune.effective_config(CFG.with_(auto_augment="randaugment", mix="mixup"))
    assert (eff.auto_augment, eff.mix, eff.aug_strength) == ("none", "none", 0.5)


def _runtime(workspace, make_dataset, monkeypatch) -> tuple[Runtime, Any]:
    """A runtime on 3 labels of 32 px images (24 training, 12 validation), one thread."""
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    data = prepare_data(make_dataset(labels=("a", "b", "c"), counts=(8, 4, 0), size=32))
    return Runtime.create(workspace, data), data


@pytest.mark.slow
def test_trains_on_cached_activations_and_predicts_like_the_whole_network(
    workspace, make_dataset, tmp_path, monkeypatch
) -> None:
    rt, data = _runtime(workspace, make_dataset, monkeypatch)
    n = data.profile.n_train
    assert toptune.rows_missing(rt, CFG, n) == len(data.val) + (1 + toptune.VIEWS) * n
    plan = TrialPlan(n_train=n, epochs=3, threads=1)
    scores: list[float] = []
    out = toptune.train_top_cached(
        rt, CFG, plan, tmp_path / "t", lambda e, s: scores.append(s) or False
    )
    assert out.score is not None and out.epochs_run == 3 and len(scores) == 3
    assert out.timings["embed_images"] == len(data.val) + (1 + toptune.VIEWS) * n
    assert toptune.rows_missing(rt, CFG, n) == 0  # cached for the next trial

    # the checkpoint is a whole network: on the images themselves it gives the validation
    # probabilities the trial computed from its (float16) cache
    weights, probs, idx = load_checkpoint(tmp_path / "t")
    model = create_model("efficientnet_lite0", num_classes=3, pretrained=False)
    model.load_state_dict(weights)
    spec = spec_for(CFG)
    full = predict(rt, model, rt.pixels(spec), idx, spec, batch=16)
    assert np.abs(full - probs).max() < 2e-2

    again = toptune.train_top_cached(rt, CFG, plan, tmp_path / "t2")
    assert "embed_images" not in again.timings  # nothing recomputed


@pytest.mark.slow
def test_a_search_runs_its_finetune_top_trials_on_cached_activations(
    workspace, make_dataset, monkeypatch
) -> None:
    from autovision.search import train

    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["finetune_top"],
        "sizes": {"efficientnet_lite0": [32]},
        "epochs": [2, 2],
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=32)
    result = train(workspace, "tiny", trials=1)
    assert result.best["mode"] == "finetune_top"
    assert result.best["aug_strength"] == toptune.VIEW_STRENGTH  # what trained: the views
    assert list((workspace.cache_dir / "embeddings").glob("efficientnet_lite0_stages5*.npy"))


@pytest.mark.slow
def test_the_default_fine_tuning_follows_the_better_linear_head(
    workspace, make_dataset, monkeypatch
) -> None:
    import optuna

    from autovision.search import search as search_mod
    from autovision.search import study as studies
    from autovision.search import train

    def squash_worse(rt, cfg, *a, **kw):  # make the padded head the better one
        out = real(rt, cfg, *a, **kw)
        if cfg.resize == "squash" and out.score is not None:
            out.score -= 0.5
        return out

    real = search_mod.train_linear
    monkeypatch.setattr(search_mod, "train_linear", squash_worse)

    space = {
        "backbones": ["efficientnet_lite0"],
        "modes": ["linear", "finetune_top"],
        "sizes": {"efficientnet_lite0": [32]},
        "epochs": [2, 2],
    }
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    make_dataset(labels=("a", "b"), counts=(8, 4, 2), size=72)  # photo-sized: 3 defaults
    train(workspace, "tiny", trials=3, cv="off")  # the (patched) validation scores rank
    (name,) = optuna.get_all_study_names(workspace.db_url)
    trials = studies.trained(optuna.load_study(study_name=name, storage=workspace.db_url))
    configs = [t.user_attrs["config"] for t in trials]
    assert [c["mode"] for c in configs] == ["linear", "linear", "finetune_top"]
    assert trials[1].value > trials[0].value and configs[1]["resize"] == "pad"
    assert configs[2]["resize"] == "pad"  # the enqueued default said squash


@pytest.mark.slow
def test_a_refit_on_cached_activations_trains_on_validation_images_too(
    workspace, make_dataset, tmp_path, monkeypatch
) -> None:
    rt, data = _runtime(workspace, make_dataset, monkeypatch)
    n, n_val = data.profile.n_train, len(data.val)
    real_fill = toptune._fill

    def poisoned(*a, **kw):
        """Augmented views followed by ``n_val`` NaN rows: a validation row (which has no
        views) read as ``views[row - n_val]`` would land there and make the loss non-finite."""
        acts, computed, seconds = real_fill(*a, **kw)
        views = [
            np.concatenate([v, np.full((n_val, *v.shape[1:]), np.nan, v.dtype)]) for v in acts[1:]
        ]
        return [acts[0], *views], computed, seconds

    monkeypatch.setattr(toptune, "_fill", poisoned)
    plan = TrialPlan(n_train=n, epochs=2, threads=1, patience=1, refit=True)
    out = toptune.train_top_cached(rt, CFG, plan, tmp_path / "r")
    bs = out.timings["batch_size"]
    assert out.timings["train_images"] == 2 * ((n + n_val) // bs) * bs
    assert out.epochs_run == 2 and out.stopped == "done"  # finite: validation rows are clean
    assert out.timings["eval_images"] == n_val  # scored once, after the last epoch
