"""Training modes as small functions over a registry model: which weights start where, and
which ones train.

- ``linear``: frozen pretrained backbone, a logistic head on cached embeddings (see
  :mod:`autovision.search.linear`), folded into the model's ``classifier``;
- ``finetune_top``: the last blocks, the head convolution and the classifier train, the rest
  stays frozen (BatchNorm statistics included);
- ``finetune_full``: every weight trains;
- ``scratch``: every weight trains from a random start (the compact CNN).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autovision.errors import TrainingError
from autovision.models.registry import create_model

TOP_BLOCKS = 2  # EfficientNet stages trained by ``finetune_top``


@dataclass
class BaseModel:
    """An earlier model package to start from (``--base-model``)."""

    id: str
    path: Path
    backbone: str
    labels: list[str]
    input_size: int
    resize: str
    state: dict[str, torch.Tensor]
    task: str

    @classmethod
    def load(cls, model_id: str, path: Path) -> BaseModel:
        from autovision.models.package import ModelPackage

        pkg = ModelPackage(path)
        model = pkg.torch_model()
        if hasattr(model, "main_model"):  # an ensemble or flips: its first member goes on
            model = model.main_model()
        return cls(
            id=model_id,
            path=Path(path),
            backbone=pkg.meta["architecture"]["backbone"],
            labels=list(pkg.labels),
            input_size=pkg.preprocessing.input_size,
            resize=pkg.preprocessing.resize,
            state={k: v.clone() for k, v in model.state_dict().items()},
            task=pkg.task,
        )


def classifier_of(model: nn.Module) -> nn.Linear:
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise TrainingError(f"{type(model).__name__} has no linear 'classifier' head")
    return head


def _classifier_prefix(model: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is classifier_of(model):
            return name
    return "classifier"


def build_model(
    backbone: str,
    labels: list[str],
    *,
    drop_rate: float = 0.0,
    base: BaseModel | None = None,
) -> nn.Module:
    """A registry model with ``len(labels)`` outputs: ImageNet weights (or the base model's
    weights, head rows of shared labels copied, new rows initialised small)."""
    model = create_model(
        backbone, num_classes=len(labels), pretrained=base is None, drop_rate=drop_rate
    )
    if base is None:
        return model
    if base.backbone != backbone:
        raise TrainingError(f"base model {base.id} is a {base.backbone}, not a {backbone}")
    prefix = _classifier_prefix(model)
    body = {k: v for k, v in base.state.items() if not k.startswith(prefix + ".")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith(prefix + ".") for k in missing):
        raise TrainingError(f"base model {base.id}: weights do not fit {backbone}")
    head = classifier_of(model)
    old_w, old_b = base.state[f"{prefix}.weight"], base.state[f"{prefix}.bias"]
    with torch.no_grad():
        nn.init.normal_(head.weight, std=0.01)
        head.bias.zero_()
        old_index = {lab: i for i, lab in enumerate(base.labels)}
        for i, lab in enumerate(labels):
            if lab in old_index:
                head.weight[i] = old_w[old_index[lab]]
                head.bias[i] = old_b[old_index[lab]]
    return model


def top_modules(model: nn.Module) -> list[nn.Module]:
    """The modules ``finetune_top`` trains."""
    if hasattr(model, "blocks") and hasattr(model, "conv_head"):  # timm EfficientNet
        return [*model.blocks[-TOP_BLOCKS:], model.conv_head, model.bn2, classifier_of(model)]
    if hasattr(model, "features") and isinstance(model.features, nn.Sequential):  # CompactCNN
        return [model.features[-1], classifier_of(model)]
    return [classifier_of(model)]


def top_split(model: nn.Module) -> int | None:
    """Index of the first stage ``finetune_top`` trains, for models whose frozen part is a
    stem and a prefix of ``blocks`` (timm EfficientNet); ``None`` for other models."""
    if hasattr(model, "blocks") and hasattr(model, "conv_head") and hasattr(model, "conv_stem"):
        return len(model.blocks) - TOP_BLOCKS
    return None


def forward_lower(model: nn.Module, x: torch.Tensor, cut: int) -> torch.Tensor:
    """The frozen part of a ``finetune_top`` model: stem and stages before ``cut``."""
    h = model.bn1(model.conv_stem(x))
    for block in model.blocks[:cut]:
        h = block(h)
    return h


def forward_upper(
    model: nn.Module, h: torch.Tensor, cut: int, *, pre_logits: bool = False
) -> torch.Tensor:
    """The rest of the network on :func:`forward_lower`'s output: logits (or embeddings)."""
    for block in model.blocks[cut:]:
        h = block(h)
    return model.forward_head(model.bn2(model.conv_head(h)), pre_logits=pre_logits)


def set_trainable(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """Freeze what ``mode`` keeps fixed; return the parameters that train."""
    if mode in ("finetune_full", "scratch"):
        for p in model.parameters():
            p.requires_grad_(True)
    elif mode == "finetune_top":
        for p in model.parameters():
            p.requires_grad_(False)
        for m in top_modules(model):
            for p in m.parameters():
                p.requires_grad_(True)
    elif mode == "linear":
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        raise TrainingError(f"unknown training mode {mode!r}")
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module) -> None:
    """``model.train()``, but frozen BatchNorm layers keep their running statistics."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters(recurse=False)
        ):
            m.eval()


def state_dict_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def model_summary(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": int(total), "trainable": int(trainable)}
