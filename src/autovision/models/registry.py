"""Backbone registry, after timm's ``register_model`` / ``create_model``.

Each backbone registers a frozen :class:`BackboneCfg`; the search space is a list of
names and the same metadata is saved with every trained model, so serving reproduces
the exact preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneCfg:
    """What a backbone needs: input size, normalisation (pixel units 0..255), weights."""

    name: str
    input_size: int
    feature_dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained: bool
    weights_source: str
    license: str
    description: str
    sizes: tuple[int, ...] = ()  # image sizes worth searching

    def to_dict(self) -> dict:
        return asdict(self)


BuildFn = Callable[[int, bool, float], nn.Module]
_REGISTRY: dict[str, tuple[BackboneCfg, BuildFn]] = {}


def register_backbone(cfg: BackboneCfg) -> Callable[[BuildFn], BuildFn]:
    """Decorator: ``build(num_classes, pretrained, drop_rate) -> nn.Module``."""

    def deco(fn: BuildFn) -> BuildFn:
        _REGISTRY[cfg.name] = (cfg, fn)
        return fn

    return deco


def list_backbones(*, pretrained: bool | None = None) -> list[str]:
    _ensure_loaded()
    return [
        n for n, (c, _) in _REGISTRY.items() if pretrained is None or c.pretrained == pretrained
    ]


def get_backbone_cfg(name: str) -> BackboneCfg:
    _ensure_loaded()
    if name not in _REGISTRY:
        from autovision.errors import ModelError

        raise ModelError(f"unknown backbone {name!r} (known: {', '.join(_REGISTRY)})")
    return _REGISTRY[name][0]


def create_model(
    name: str, *, num_classes: int, pretrained: bool = True, drop_rate: float = 0.0
) -> nn.Module:
    """Build a classifier: backbone + linear head with ``num_classes`` outputs (logits).

    With ``num_classes=0`` the model returns pooled features of ``feature_dim``.
    The model exposes ``forward_features``-free pooled embeddings via ``forward_head``
    like timm models do (``model.forward_head(model.forward_features(x), pre_logits=True)``).
    """
    cfg = get_backbone_cfg(name)
    model = _REGISTRY[name][1](num_classes, pretrained and cfg.pretrained, drop_rate)
    model.autovision_cfg = cfg  # type: ignore[attr-defined]
    return model


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features of a timm-style model."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _ensure_loaded() -> None:
    # Registration happens on import of the implementation modules.
    from autovision.models import cnn, efficientnet  # noqa: F401
