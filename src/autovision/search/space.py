"""The search space: backbone x training mode x image size x optimisation and augmentation.

A :class:`TrialConfig` is what one trial trains; :func:`suggest` draws one from an Optuna
trial and :func:`default_configs` gives the strong starting points enqueued first.
Hyperparameters shared by every mode (``lr_mult``, ``weight_decay``...) keep one name so the
TPE sampler learns across modes; the absolute learning rate is ``lr_mult`` times a base rate
per mode.

The default space is the whole registry. ``AUTOVISION_SEARCH_SPACE`` (JSON) restricts it, e.g.
``{"backbones": ["compact_cnn"], "sizes": {"compact_cnn": [16]}, "epochs": [1, 2]}``; tests and
quick experiments use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from autovision.errors import TrainingError
from autovision.models.registry import get_backbone_cfg, list_backbones
from autovision.search.prepare import DataProfile

ENV_SPACE = "AUTOVISION_SEARCH_SPACE"
MODES = ("linear", "finetune_top", "finetune_full", "scratch")
PRETRAINED_MODES = ("linear", "finetune_top", "finetune_full")
BASE_MODEL_MODES = ("finetune_top", "finetune_full", "linear")
AUTO_AUGMENT = ("none", "randaugment", "trivialaugment")
MIX = ("none", "mixup", "cutmix")
IMBALANCE = ("none", "weighted_loss", "balanced_sampler")
RESIZE = ("squash", "pad")  # pad: whole image on its border colour (clip art, product shots)
IMBALANCE_RATIO = 1.5  # searched only when the largest label is this much bigger than the smallest
BASE_LR = {"finetune_top": 1e-3, "finetune_full": 3e-4, "scratch": 3e-3}


@dataclass(frozen=True)
class SearchSpace:
    """What may be searched; ``None`` means everything the registry offers."""

    backbones: tuple[str, ...] | None = None
    modes: tuple[str, ...] = PRETRAINED_MODES
    sizes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    epochs: tuple[int, int] = (4, 30)
    linear_steps: int = 150  # L-BFGS iterations of a linear head
    batch_size: int | None = None

    @classmethod
    def from_env(cls) -> SearchSpace:
        raw = os.environ.get(ENV_SPACE, "").strip()
        if not raw:
            return cls()
        try:
            d = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{ENV_SPACE} is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchSpace:
        unknown = set(d) - {"backbones", "modes", "sizes", "epochs", "linear_steps", "batch_size"}
        if unknown:
            raise TrainingError(f"unknown search-space keys: {', '.join(sorted(unknown))}")
        space = cls(
            backbones=tuple(d["backbones"]) if d.get("backbones") else None,
            modes=tuple(d.get("modes", PRETRAINED_MODES)),
            sizes={k: tuple(int(s) for s in v) for k, v in d.get("sizes", {}).items()},
            epochs=_epoch_range(d.get("epochs", (4, 30))),
            linear_steps=_positive(d.get("linear_steps", 150), "linear_steps"),
            batch_size=None
            if d.get("batch_size") is None
            else _positive(d["batch_size"], "batch_size"),
        )
        for name in space.backbones or ():
            get_backbone_cfg(name)  # unknown names fail here
        bad = set(space.modes) - set(PRETRAINED_MODES)
        if bad:
            raise TrainingError(f"unknown training modes: {', '.join(sorted(bad))}")
        return space

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sizes"] = {k: list(v) for k, v in self.sizes.items()}
        return d

    def backbone_names(self) -> list[str]:
        return list(self.backbones) if self.backbones else list_backbones()

    def sizes_for(self, backbone: str) -> tuple[int, ...]:
        if backbone in self.sizes:
            return self.sizes[backbone]
        cfg = get_backbone_cfg(backbone)
        return cfg.sizes or (cfg.input_size,)

    def modes_for(self, backbone: str) -> tuple[str, ...]:
        return self.modes if get_backbone_cfg(backbone).pretrained else ("scratch",)


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TrainingError(f"search space: {key!r} must be a positive integer, not {value!r}")
    return value


def _epoch_range(value: Any) -> tuple[int, int]:
    """``epochs``: ``N``, ``[N]`` or ``[MIN, MAX]`` (positive integers, MIN <= MAX)."""
    items = value if isinstance(value, list | tuple) else [value]
    if not 1 <= len(items) <= 2:
        raise TrainingError(f"search space: 'epochs' must be N or [MIN, MAX], not {value!r}")
    lo, hi = (_positive(v, "epochs") for v in (items[0], items[-1]))
    if lo > hi:
        raise TrainingError(f"search space: 'epochs' [{lo}, {hi}]: MIN is above MAX")
    return lo, hi


_IMAGE_ONLY = (
    "lr",
    "weight_decay",
    "epochs",
    "batch_size",
    "aug_strength",
    "hflip",
    "auto_augment",
    "mix",
    "drop_rate",
)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with (JSON-able, saved as the model's hyperparameters)."""

    backbone: str
    mode: str
    image_size: int
    resize: str = "squash"  # a Preprocessing resize rule: squash | pad
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 10
    batch_size: int = 64
    aug_strength: float = 0.3
    hflip: bool = True
    auto_augment: str = "none"
    label_smoothing: float = 0.1
    mix: str = "none"
    imbalance: str = "none"
    drop_rate: float = 0.1
    l2: float = 1e-3  # linear mode: L2 penalty of the logistic head

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """The settings that matter for this mode (all of them with ``full``)."""
        d = asdict(self)
        if full:
            return d
        drop = _IMAGE_ONLY if self.mode == "linear" else ("l2",)
        return {k: v for k, v in d.items() if k not in drop}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_(self, **kw: Any) -> TrialConfig:
        return replace(self, **kw)

    @property
    def key(self) -> str:
        """What the cost of an epoch depends on."""
        return f"{self.backbone}/{self.mode}/{self.image_size}"


def default_batch_size(mode: str, gpu: bool, space: SearchSpace | None = None) -> int:
    if space is not None and space.batch_size:
        return int(space.batch_size)
    if mode == "scratch":
        return 256  # on CPU too: about 13% more images/s than 128 for the compact CNN
    return 64 if gpu else 32


def _size_for(sizes: tuple[int, ...], median_side: int, prefer: int | None = None) -> int:
    """The largest searched size not above ``prefer`` or the images' median side (at least
    the smallest size)."""
    target = prefer or median_side
    fitting = [s for s in sorted(sizes) if s <= max(target, min(sizes))]
    return fitting[-1]


def suggest(
    trial: Any,
    space: SearchSpace,
    profile: DataProfile,
    *,
    multi_label: bool,
    gpu: bool,
    base_backbone: str | None = None,
    base_size: int | None = None,
    base_resize: str | None = None,
) -> TrialConfig:
    """Draw a configuration from an Optuna trial (parameter names are stable across runs)."""
    if base_backbone is not None:
        backbone = base_backbone
        size = base_size or get_backbone_cfg(backbone).input_size
        modes = tuple(m for m in BASE_MODEL_MODES if m in space.modes or m == "finetune_full")
        mode = trial.suggest_categorical("base_mode", list(modes))
        resize = base_resize or "squash"  # the earlier model saw its images so
    else:
        backbone = trial.suggest_categorical("backbone", space.backbone_names())
        modes = space.modes_for(backbone)
        mode = modes[0] if len(modes) == 1 else trial.suggest_categorical("mode", list(modes))
        size = trial.suggest_categorical(f"size_{backbone}", list(space.sizes_for(backbone)))
        resize = trial.suggest_categorical("resize", list(RESIZE))
    cfg = TrialConfig(backbone=backbone, mode=mode, image_size=int(size), resize=resize)
    imbalanced = profile.imbalance >= IMBALANCE_RATIO
    kw: dict[str, Any] = {}
    if imbalanced:
        kw["imbalance"] = trial.suggest_categorical("imbalance", list(IMBALANCE))
    kw["label_smoothing"] = 0.0 if multi_label else trial.suggest_float("label_smoothing", 0.0, 0.2)
    if mode == "linear":
        kw["l2"] = trial.suggest_float("l2", 1e-5, 1e-1, log=True)
        kw["mix"] = "none"
        return cfg.with_(**kw)
    lo, hi = space.epochs
    kw.update(
        lr=BASE_LR[mode] * trial.suggest_float("lr_mult", 0.25, 4.0, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-4, 0.1, log=True),
        epochs=trial.suggest_int("epochs", lo, hi) if hi > lo else lo,
        batch_size=default_batch_size(mode, gpu, space),
        aug_strength=trial.suggest_float("aug_strength", 0.0, 1.0),
        hflip=trial.suggest_categorical("hflip", [False, True]),
        auto_augment=trial.suggest_categorical("auto_augment", list(AUTO_AUGMENT)),
        mix=trial.suggest_categorical("mix", list(MIX)),
        drop_rate=trial.suggest_float("drop_rate", 0.0, 0.4),
    )
    return cfg.with_(**kw)


def params_for(cfg: TrialConfig, *, base_model: bool, imbalanced: bool, multi_label: bool) -> dict:
    """The Optuna parameters that reproduce ``cfg`` (for ``study.enqueue_trial``)."""
    p: dict[str, Any] = {}
    if base_model:
        p["base_mode"] = cfg.mode
    else:
        p["backbone"] = cfg.backbone
        if get_backbone_cfg(cfg.backbone).pretrained:
            p["mode"] = cfg.mode
        p[f"size_{cfg.backbone}"] = cfg.image_size
        p["resize"] = cfg.resize
    if imbalanced:
        p["imbalance"] = cfg.imbalance
    if not multi_label:
        p["label_smoothing"] = cfg.label_smoothing
    if cfg.mode == "linear":
        p["l2"] = cfg.l2
        return p
    p.update(
        lr_mult=cfg.lr / BASE_LR[cfg.mode],
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        aug_strength=cfg.aug_strength,
        hflip=cfg.hflip,
        auto_augment=cfg.auto_augment,
        mix=cfg.mix,
        drop_rate=cfg.drop_rate,
    )
    return p


def default_configs(
    space: SearchSpace,
    profile: DataProfile,
    *,
    multi_label: bool,
    gpu: bool,
    base_backbone: str | None = None,
    base_size: int | None = None,
    base_resize: str | None = None,
) -> list[TrialConfig]:
    """Strong first trials: a compact CNN from scratch for small or grayscale images, frozen
    EfficientNet-Lite0 features + a linear head on squashed and on padded images (then
    fine-tuning its top) for photos, and fine-tuning of the earlier model with
    ``--base-model``."""
    lo, hi = space.epochs
    ep = max(lo, min(hi, 15))
    imb = "weighted_loss" if profile.imbalance >= IMBALANCE_RATIO else "none"
    ls = 0.0 if multi_label else 0.1
    out: list[TrialConfig] = []
    names = space.backbone_names()

    def image_cfg(backbone: str, mode: str, size: int, **kw: Any) -> TrialConfig:
        base = dict(
            lr=BASE_LR[mode],
            weight_decay=0.05 if mode != "finetune_full" else 0.01,
            epochs=ep,
            batch_size=default_batch_size(mode, gpu, space),
            aug_strength=0.3,
            hflip=not profile.small,
            auto_augment="none",
            label_smoothing=ls,
            mix="none",
            imbalance=imb,
            drop_rate=0.1,
        )
        base.update(kw)
        return TrialConfig(backbone=backbone, mode=mode, image_size=size, **base)

    def linear_cfg(backbone: str, size: int, resize: str) -> TrialConfig:
        # sklearn's LogisticRegression default (C=1) on ~1,000 images is about this L2; label
        # smoothing costs a frozen linear head 3-5 validation points (openclipart, measured)
        return TrialConfig(
            backbone, "linear", size, resize=resize, label_smoothing=0.0, imbalance=imb, l2=1e-2
        )

    if base_backbone is not None:
        size = base_size or get_backbone_cfg(base_backbone).input_size
        resize = base_resize or "squash"
        # only modes the space allows (``suggest`` draws ``base_mode`` from them)
        if "finetune_top" in space.modes:
            out.append(image_cfg(base_backbone, "finetune_top", size, resize=resize))
        if "linear" in space.modes:
            out.append(linear_cfg(base_backbone, size, resize))
        if not out:
            out.append(image_cfg(base_backbone, "finetune_full", size, resize=resize))
        return out

    small_first = profile.small or profile.grayscale
    cnn = "compact_cnn" if "compact_cnn" in names else None
    lite = next((n for n in ("efficientnet_lite0", *names) if n in names and n != cnn), None)
    cnn_cfgs, lite_cfgs = [], []
    if cnn:
        sizes = space.sizes_for(cnn)
        size = _size_for(sizes, profile.median_side)
        # mirrored images are the same class for most subjects (clothes, objects) and a
        # different one for characters: flips first (on large data only the first default
        # may fit in the exploration time), the unflipped variant second
        cnn_cfgs.append(image_cfg(cnn, "scratch", size, aug_strength=0.5, hflip=True))
        cnn_cfgs.append(image_cfg(cnn, "scratch", size, aug_strength=0.5, hflip=False))
    if lite and get_backbone_cfg(lite).pretrained:
        sizes = space.sizes_for(lite)
        size = _size_for(sizes, profile.median_side, prefer=get_backbone_cfg(lite).input_size)
        if "linear" in space.modes:
            lite_cfgs += [linear_cfg(lite, size, "squash"), linear_cfg(lite, size, "pad")]
        if "finetune_top" in space.modes:
            # starts from a fitted linear head on cached activations (search/toptune.py):
            # a gentle rate and epochs are cheap (openclipart: 0.844 -> 0.877 test in 15)
            top = image_cfg(lite, "finetune_top", size, lr=0.3 * BASE_LR["finetune_top"])
            lite_cfgs.append(top.with_(epochs=max(lo, min(hi, 15))))
    out = cnn_cfgs + lite_cfgs[:1] if small_first else lite_cfgs + cnn_cfgs[:1]
    return out
