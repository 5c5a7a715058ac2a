"""Time planning: what a trial costs on this machine, and how much data and how many epochs
fit in the time it gets.

Costs start from a prior (multiply-accumulates per image times a per-family speed of this
machine) and are replaced by measurements as soon as a configuration has run one epoch; a
measured configuration also calibrates its family's speed for the ones not measured yet.
The measurements live in the run state, so a resumed run plans with them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from autovision.search.space import TrialConfig

# forward GMACs per image at a reference size
_GMACS = {
    "compact_cnn": (0.0295, 28),
    "efficientnet_lite0": (0.385, 224),
    "efficientnet_lite1": (0.61, 240),
    "efficientnet_lite2": (0.87, 260),
}
_MODE_FACTOR = {"scratch": 3.0, "finetune_full": 3.0, "finetune_top": 1.7, "linear": 1.0}
# effective forward GMAC/s of one CPU core / one GPU, per family (priors only)
_PRIOR_SPEED = {
    ("cpu", "cnn"): 22.0,
    ("cpu", "effnet"): 7.0,
    ("gpu", "cnn"): 4000.0,
    ("gpu", "effnet"): 2500.0,
}
_SETUP_S = {"cnn": 0.3, "effnet": 2.0}
_DECODE_PRIOR_S = 1.5e-3  # per image and CPU core
MIN_TRAIN_IMAGES = 256


def family(backbone: str) -> str:
    return "cnn" if backbone == "compact_cnn" else "effnet"


def gmacs(backbone: str, size: int) -> float:
    g, ref = _GMACS.get(backbone, _GMACS["efficientnet_lite0"])
    return g * (size / ref) ** 2


def _parse_key(key: str) -> tuple[str, str, int]:
    """``backbone/mode/size`` (train, eval) or ``backbone/size`` (embed)."""
    parts = key.split("/")
    if len(parts) == 2:
        return parts[0], "linear", int(parts[1])
    return parts[0], parts[1], int(parts[2])


class CostModel:
    """Seconds per image for training, evaluation, embedding and decoding."""

    def __init__(self, *, gpu: bool, state: dict[str, Any] | None = None) -> None:
        self.gpu = gpu
        self.cores = 1 if gpu else max(1, os.cpu_count() or 1)
        s = state or {}
        self.train: dict[str, float] = dict(s.get("train", {}))
        self.eval: dict[str, float] = dict(s.get("eval", {}))
        self.embed: dict[str, float] = dict(s.get("embed", {}))
        self.decode: float | None = s.get("decode")

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train, "eval": self.eval, "embed": self.embed, "decode": self.decode}

    # ---- observations ---------------------------------------------------------------------

    def observe(self, cfg: TrialConfig, timings: dict[str, float]) -> None:
        def rate(seconds: str, images: str) -> float | None:
            n = timings.get(images, 0)
            return timings.get(seconds, 0.0) / n if n else None

        if (r := rate("train_s", "train_images")) is not None:
            self.train[cfg.key] = r
        if (r := rate("eval_s", "eval_images")) is not None:
            self.eval[cfg.key] = r
        if (r := rate("embed_s", "embed_images")) is not None:
            self.embed[f"{cfg.backbone}/{cfg.image_size}"] = r

    def observe_decode(self, seconds: float, images: int) -> None:
        if images:
            self.decode = seconds / images

    # ---- estimates ------------------------------------------------------------------------

    def _speed(self, fam: str, table: dict[str, float], factor_of: Any) -> float:
        """GMAC/s of a family, from measurements when there are any."""
        speeds = []
        for key, s_per_img in table.items():
            backbone, mode, size = _parse_key(key)
            if family(backbone) == fam and s_per_img > 0:
                speeds.append(gmacs(backbone, size) * factor_of(mode) / s_per_img)
        if speeds:
            speeds.sort()
            return speeds[len(speeds) // 2]
        prior = _PRIOR_SPEED[("gpu" if self.gpu else "cpu", fam)]
        return prior * (1 if self.gpu else self.cores)

    def train_s(self, cfg: TrialConfig) -> float:
        if cfg.key in self.train:
            return self.train[cfg.key]
        fam = family(cfg.backbone)
        speed = self._speed(fam, self.train, lambda m: _MODE_FACTOR.get(m, 3.0))
        return gmacs(cfg.backbone, cfg.image_size) * _MODE_FACTOR.get(cfg.mode, 3.0) / speed

    def eval_s(self, cfg: TrialConfig) -> float:
        if cfg.key in self.eval:
            return self.eval[cfg.key]
        fam = family(cfg.backbone)
        speed = self._speed(fam, self.eval, lambda m: 1.0)
        if not any(family(k.split("/")[0]) == fam for k in self.eval):
            speed *= 1.5  # inference is cheaper per MAC than the prior for training
        return gmacs(cfg.backbone, cfg.image_size) / speed

    def embed_s(self, cfg: TrialConfig) -> float:
        key = f"{cfg.backbone}/{cfg.image_size}"
        if key in self.embed:
            return self.embed[key]
        return self.eval_s(cfg)

    def decode_s(self) -> float:
        return self.decode if self.decode is not None else _DECODE_PRIOR_S / self.cores

    def setup_s(self, cfg: TrialConfig) -> float:
        return _SETUP_S[family(cfg.backbone)]

    def trial_seconds(
        self,
        cfg: TrialConfig,
        *,
        n_train: int,
        n_eval: int,
        epochs: int,
        n_decode: int = 0,
        n_embed: int = 0,
    ) -> float:
        """Estimated wall time of one trial."""
        fixed = self.setup_s(cfg) + n_decode * self.decode_s()
        if cfg.mode == "linear":
            return fixed + n_embed * self.embed_s(cfg) + 1.0 + 1e-6 * n_train
        per_epoch = n_train * self.train_s(cfg) + n_eval * self.eval_s(cfg)
        return fixed + epochs * per_epoch


@dataclass(frozen=True)
class Fidelity:
    n_train: int
    epochs: int
    seconds: float


def fit_fidelity(
    cost: CostModel,
    cfg: TrialConfig,
    *,
    seconds: float,
    n_train_max: int,
    n_eval: int,
    n_decode: int,
    n_embedded: int = 0,
    n_val: int = 0,
    min_images: int = MIN_TRAIN_IMAGES,
    min_epochs: int = 2,
) -> Fidelity | None:
    """The most training data (then the most epochs, up to ``cfg.epochs``) that fits in
    ``seconds``; ``None`` when even the smallest trial does not fit."""
    n_min = min(n_train_max, min_images)
    if cfg.mode == "linear":
        for n in sorted(
            {n_train_max, max(n_min, n_train_max // 2), max(n_min, n_train_max // 4), n_min},
            reverse=True,
        ):
            n_embed = max(0, n_val + n - n_embedded)
            t = cost.trial_seconds(
                cfg, n_train=n, n_eval=n_eval, epochs=1, n_decode=n_decode, n_embed=n_embed
            )
            if t <= seconds:
                return Fidelity(n, 1, t)
        return None
    fixed = cost.trial_seconds(cfg, n_train=0, n_eval=0, epochs=0, n_decode=n_decode)
    per_img, per_eval = cost.train_s(cfg), n_eval * cost.eval_s(cfg)
    epochs = cfg.epochs
    while epochs >= min(min_epochs, cfg.epochs):
        room = (seconds - fixed) / epochs - per_eval
        n = min(n_train_max, int(room / per_img)) if room > 0 else 0
        if n >= n_min:
            return Fidelity(n, epochs, fixed + epochs * (n * per_img + per_eval))
        epochs = epochs - max(1, epochs // 4)
    return None


def epochs_that_fit(
    cost: CostModel, cfg: TrialConfig, *, seconds: float, n_train: int, n_eval: int, n_decode: int
) -> int:
    """Whole epochs over ``n_train`` images that fit in ``seconds``."""
    fixed = cost.trial_seconds(cfg, n_train=0, n_eval=0, epochs=0, n_decode=n_decode)
    per_epoch = n_train * cost.train_s(cfg) + n_eval * cost.eval_s(cfg)
    return max(0, math.floor((seconds - fixed) / per_epoch)) if per_epoch > 0 else 0
