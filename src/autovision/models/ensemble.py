"""One model from several: a weighted ensemble and test-time horizontal flips, as a single
PyTorch module exported to a single ONNX graph.

The members are combined *before* export (not by stitching their ONNX graphs): the package's
int8 quantization and TorchScript export rebuild the model from ``weights.safetensors``
(:meth:`ModelPackage.torch_model`), so the combination has to exist as a module; the ONNX
graph is then one export of it, served, exported and quantized like any other.

- Members whose backbones hold the same weights (linear heads on one frozen backbone) form
  one *group*: the backbone runs once and each member's head reads its pooled features.
- Members share the package's input size and resize rule; a member whose backbone wants
  another mean/std gets the exact affine correction of the input in the graph.
- Output: the weighted mean of the members' probabilities (with flips: the mean of that on
  the image and on its mirror image), returned as log-probabilities (single-label) or
  log-odds (multi-label) so that the package's softmax / sigmoid gives it back; the
  ``embedding`` output is the first (highest-weight) member's pooled features.

``architecture["ensemble"]`` in ``model.json`` describes the structure (:func:`describe`);
:func:`build` rebuilds the module from it and the state dict.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autovision.errors import ModelError

FLIP_AXIS = -1  # width of NCHW


@dataclass
class Member:
    """One member: its logits model, backbone name, weight and preprocessing mean/std."""

    model: nn.Module
    backbone: str
    weight: float
    mean: Sequence[float]
    std: Sequence[float]
    trial: int | None = None


def _head(model: nn.Module) -> nn.Module | None:
    """The linear classifier of a model with timm-style ``forward_features`` /
    ``forward_head``, ``None`` when it has no such split."""
    head = getattr(model, "classifier", None)
    has_split = callable(getattr(model, "forward_features", None)) and callable(
        getattr(model, "forward_head", None)
    )
    return head if has_split and isinstance(head, nn.Linear) else None


def _backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    head = _head(model)
    skip = {id(t) for t in head.parameters()} if head is not None else set()
    out = {k: v for k, v in model.named_parameters() if id(v) not in skip}
    out.update(dict(model.named_buffers()))
    return out


def same_backbone(a: nn.Module, b: nn.Module) -> bool:
    """Whether ``a`` and ``b`` differ at most in their linear heads."""
    if type(a) is not type(b) or _head(a) is None or _head(b) is None:
        return False
    sa, sb = _backbone_state(a), _backbone_state(b)
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


class CombinedModel(nn.Module):
    """Members grouped by shared backbone; see the module docstring."""

    def __init__(
        self,
        backbones: Sequence[nn.Module],
        heads: Sequence[nn.Module | None],
        groups: Sequence[int],
        weights: Sequence[float],
        *,
        task: str,
        tta: bool = False,
        affine: Sequence[tuple[Sequence[float], Sequence[float]] | None] = (),
    ) -> None:
        super().__init__()
        if not (len(heads) == len(groups) == len(weights)) or not len(weights):
            raise ModelError("an ensemble needs one head, group and weight per member")
        self.backbones = nn.ModuleList(backbones)
        self.heads = nn.ModuleList([h if h is not None else nn.Identity() for h in heads])
        self.own_head = [h is not None for h in heads]
        self.groups = [int(g) for g in groups]
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        self.multi_label = task == "multi-label"
        self.tta = bool(tta)
        self.affine = list(affine) or [None] * len(backbones)
        for g, aff in enumerate(self.affine):
            if aff is not None:
                scale, shift = aff
                self.register_buffer(f"scale{g}", torch.tensor(scale).view(1, 3, 1, 1))
                self.register_buffer(f"shift{g}", torch.tensor(shift).view(1, 3, 1, 1))

    # ---- the pass -------------------------------------------------------------------------

    def _input(self, x: torch.Tensor, g: int) -> torch.Tensor:
        if self.affine[g] is None:
            return x
        return x * getattr(self, f"scale{g}") + getattr(self, f"shift{g}")

    def _features(self, x: torch.Tensor) -> list[Any]:
        """Per group: the backbone's features (a group of members with their own heads) or
        the member's logits (a model without the split)."""
        out: list[Any] = []
        for g, backbone in enumerate(self.backbones):
            xg = self._input(x, g)
            shared = any(self.own_head[m] for m in range(len(self.groups)) if self.groups[m] == g)
            out.append(backbone.forward_features(xg) if shared else backbone(xg))
        return out

    def _probs(self, feats: list[Any]) -> torch.Tensor:
        pooled: dict[int, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for m, g in enumerate(self.groups):
            if self.own_head[m]:
                if g not in pooled:
                    pooled[g] = self.backbones[g].forward_head(feats[g], pre_logits=True)
                logits = self.heads[m](pooled[g])
            else:
                logits = feats[g]
            logits = logits.float()
            p = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
            total = self.weights[m] * p if total is None else total + self.weights[m] * p
        assert total is not None
        return total

    def _all_features(self, x: torch.Tensor) -> list[Any]:
        feats = self._features(x)
        return feats + self._features(torch.flip(x, dims=[FLIP_AXIS])) if self.tta else feats

    def _out(self, feats: list[Any], pre_logits: bool = False) -> torch.Tensor:
        n = len(self.backbones)
        if pre_logits:  # the first member's pooled features of the image as it came
            g = self.groups[0]
            return self.backbones[g].forward_head(feats[g], pre_logits=True)
        p = self._probs(feats[:n])
        if self.tta:
            p = 0.5 * (p + self._probs(feats[n:]))
        if self.multi_label:
            p = p.clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        return torch.log(p.clamp_min(1e-30))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(self._all_features(x))

    def main_model(self) -> nn.Module:
        """The first member as a plain logits model (its own backbone and head)."""
        model = copy.deepcopy(self.backbones[self.groups[0]])
        if self.own_head[0]:
            model.classifier = copy.deepcopy(self.heads[0])
        return model


class _WithEmbedding(CombinedModel):
    """A combined model whose first member has pooled features: the package's ``embedding``
    output (timm's ``forward_features`` / ``forward_head(pre_logits=)``)."""

    def forward_features(self, x: torch.Tensor) -> list[Any]:
        return self._all_features(x)

    def forward_head(self, feats: list[Any], pre_logits: bool = False) -> torch.Tensor:
        return self._out(feats, pre_logits)


def _new(heads: Sequence[nn.Module | None], *args: Any, **kw: Any) -> CombinedModel:
    cls = _WithEmbedding if heads[0] is not None else CombinedModel
    return cls(*args, **kw).eval()


def combine(
    members: Sequence[Member],
    *,
    task: str,
    tta: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> CombinedModel:
    """The :class:`CombinedModel` of ``members`` (the first is the package's main model; its
    preprocessing, or ``mean``/``std``, is the input's), sharing backbones where they can."""
    if not members:
        raise ModelError("an ensemble needs at least one member")
    mean = tuple(mean if mean is not None else members[0].mean)
    std = tuple(std if std is not None else members[0].std)
    backbones: list[nn.Module] = []
    group_of: list[int] = []
    for mb in members:
        g = next(
            (i for i, b in enumerate(backbones) if b is mb.model or same_backbone(b, mb.model)),
            None,
        )
        if g is None:
            backbones.append(mb.model)
            g = len(backbones) - 1
        group_of.append(g)
    heads = [
        copy.deepcopy(_head(mb.model)) if _head(mb.model) is not None else None for mb in members
    ]
    firsts = {g: members[group_of.index(g)] for g in range(len(backbones))}
    affine = [_affine(mean, std, firsts[g].mean, firsts[g].std) for g in range(len(backbones))]
    return _new(
        heads,
        backbones,
        heads,
        group_of,
        [mb.weight for mb in members],
        task=task,
        tta=tta,
        affine=affine,
    )


def _affine(
    mean: Sequence[float], std: Sequence[float], to_mean: Sequence[float], to_std: Sequence[float]
) -> tuple[list[float], list[float]] | None:
    """``(scale, shift)`` turning an input normalised with ``mean``/``std`` into one
    normalised with ``to_mean``/``to_std`` (``None``: the same)."""
    if tuple(mean) == tuple(to_mean) and tuple(std) == tuple(to_std):
        return None
    scale = [s / t for s, t in zip(std, to_std, strict=True)]
    shift = [(m - tm) / t for m, tm, t in zip(mean, to_mean, to_std, strict=True)]
    return scale, shift


def describe(model: CombinedModel, members: Sequence[Member]) -> dict[str, Any]:
    """``architecture["ensemble"]``: what :func:`build` needs besides the state dict."""
    return {
        "groups": [
            {"backbone": members[model.groups.index(g)].backbone, "affine": model.affine[g]}
            for g in range(len(model.backbones))
        ],
        "members": [
            {
                "backbone": mb.backbone,
                "group": model.groups[i],
                "own_head": model.own_head[i],
                "weight": model.weights[i],
                "trial": mb.trial,
            }
            for i, mb in enumerate(members)
        ],
        "tta": model.tta,
    }


def build(arch: dict[str, Any], task: str) -> CombinedModel:
    """An empty :class:`CombinedModel` shaped as ``arch`` (``model.json``'s architecture);
    load the package's state dict into it."""
    from autovision.models.registry import create_model

    spec = arch.get("ensemble")
    if not spec:
        raise ModelError("model.json's architecture describes no ensemble")
    n = int(arch["num_classes"])
    backbones = [
        create_model(g["backbone"], num_classes=n, pretrained=False) for g in spec["groups"]
    ]
    members = spec["members"]
    heads = [
        copy.deepcopy(backbones[m["group"]].classifier) if m["own_head"] else None for m in members
    ]
    affine = [tuple(g["affine"]) if g.get("affine") else None for g in spec["groups"]]
    return _new(
        heads,
        backbones,
        heads,
        [m["group"] for m in members],
        [m["weight"] for m in members],
        task=task,
        tta=bool(spec.get("tta")),
        affine=affine,
    )


def inference_times(
    graphs: Sequence[bytes],
    input_size: int,
    *,
    batch: int = 8,
    repeats: int = 15,
    threads: int = 1,
) -> list[float]:
    """Median seconds per image of each ONNX model on the same batch of ``batch`` zeros
    (ONNX Runtime, CPU, ``threads`` intra-op threads, one warm-up run each). The models run
    in turn, ``repeats`` rounds, so a machine whose load changes slows them alike and their
    ratio holds (separate timings on a shared machine were seen 2.5x off)."""
    import statistics
    import time

    import numpy as np
    import onnxruntime as ort

    from autovision.models.package import ONNX_INPUT, ONNX_OUTPUT

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sessions = [ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"]) for g in graphs]
    x = np.zeros((batch, 3, input_size, input_size), dtype=np.float32)
    for sess in sessions:
        sess.run([ONNX_OUTPUT], {ONNX_INPUT: x})
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(max(1, repeats)):
        for sess, out in zip(sessions, times, strict=True):
            t = time.perf_counter()
            sess.run([ONNX_OUTPUT], {ONNX_INPUT: x})
            out.append(time.perf_counter() - t)
    return [statistics.median(t) / batch for t in times]


def architecture(model: CombinedModel, members: Sequence[Member], num_classes: int) -> dict:
    """``model.json``'s ``architecture`` of a combined package (``backbone``: the first
    member's)."""
    return {
        "backbone": members[0].backbone,
        "num_classes": int(num_classes),
        "ensemble": describe(model, members),
    }
