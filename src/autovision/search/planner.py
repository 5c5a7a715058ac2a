"""Time planning: what a trial costs on this machine (:class:`CostModel`), and how much data,
how many epochs and which deadline each trial gets (:class:`Planner`).

Costs start from a prior (multiply-accumulates per image times a per-family speed of this
machine) and are replaced by measurements as soon as a configuration has run one epoch; a
measured configuration also calibrates its family's speed for the ones not measured yet.
The measurements live in the run state, so a resumed run plans with them.
"""

from __future__ import annotations

import math
import os
import time
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
# finetune_top on cached activations: the top stages only (openclipart, Lite0 224 px, 2 cores:
# 20 ms per image and epoch against 46 ms for the frozen stages' forward)
_CACHED_TOP_FACTOR = 0.5
# effective forward-equivalent training GMAC/s of one CPU core / one GPU, per family (priors)
_PRIOR_SPEED = {
    ("cpu", "cnn"): 22.0,
    ("cpu", "effnet"): 7.0,
    ("gpu", "cnn"): 4000.0,
    ("gpu", "effnet"): 2500.0,
}
_SETUP_S = {"cnn": 0.3, "effnet": 2.0}
# writing the package (ONNX export, safetensors, model.json): 0.2 s and 2.3-2.8 s measured on
# 2 busy cores, doubled
_EXPORT_S = {"cnn": 0.5, "effnet": 5.0}
_TRAIN_OF_INFERENCE = 0.67
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
        self.cv: dict[str, float] = dict(s.get("cv", {}))  # a linear head's folds, per image
        self.cached: set[str] = set(s.get("cached", []))  # keys that train on cached activations
        self.threads = self.cores  # threads of the trial being planned (CPU)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.train,
            "eval": self.eval,
            "embed": self.embed,
            "decode": self.decode,
            "cv": self.cv,
            "cached": sorted(self.cached),
        }

    def _factor(self, key: str) -> float:
        """Training cost of a ``backbone/mode/size`` key in forward passes."""
        if key in self.cached:
            return _CACHED_TOP_FACTOR
        return _MODE_FACTOR.get(_parse_key(key)[1], 3.0)

    def use_threads(self, threads: int | None) -> None:
        """Plan for ``threads`` CPU threads (rates are stored as if every core ran)."""
        self.threads = max(1, min(self.cores, threads or self.cores))

    @property
    def _slow(self) -> float:
        return 1.0 if self.gpu else self.cores / self.threads

    # ---- observations ---------------------------------------------------------------------

    def observe(self, cfg: TrialConfig, timings: dict[str, float]) -> None:
        share = 1.0 if self.gpu else min(1.0, timings.get("threads", self.cores) / self.cores)

        def rate(seconds: str, images: str) -> float | None:
            n = timings.get(images, 0)
            return timings.get(seconds, 0.0) / n * share if n else None

        if (r := rate("train_s", "train_images")) is not None:
            self.train[cfg.key] = r
        if (r := rate("eval_s", "eval_images")) is not None:
            self.eval[cfg.key] = r
        if (r := rate("embed_s", "embed_images")) is not None:
            self.embed[f"{cfg.backbone}/{cfg.image_size}"] = r
        if (r := rate("cv_s", "cv_images")) is not None:  # one repeat of the folds (.cv)
            self.cv[cfg.backbone] = r

    def observe_decode(self, seconds: float, images: int) -> None:
        if images:
            self.decode = seconds / images

    # ---- estimates ------------------------------------------------------------------------

    def _measured(self, fam: str, table: dict[str, float], per_mode: bool) -> float | None:
        """Median GMAC/s of family ``fam`` in a table of seconds per image (``None``: none)."""
        speeds = sorted(
            gmacs(b, size) * (self._factor(key) if per_mode else 1.0) / s_per_img
            for key, (b, _, size), s_per_img in (
                (key, _parse_key(key), v) for key, v in table.items() if v > 0
            )
            if family(b) == fam and (per_mode or key not in self.cached)
        )
        return speeds[len(speeds) // 2] if speeds else None

    def _prior(self, fam: str) -> float:
        prior = _PRIOR_SPEED[("gpu" if self.gpu else "cpu", fam)]
        return prior * (1 if self.gpu else self.cores)

    def _train_speed(self, fam: str) -> float:
        """Training GMAC/s (forward-equivalent): measured, else from inference measurements
        (training gets about 2/3 of the inference rate per MAC), else the prior."""
        if (v := self._measured(fam, self.train, per_mode=True)) is not None:
            return v
        inference = self._measured(fam, {**self.eval, **self.embed}, per_mode=False)
        return _TRAIN_OF_INFERENCE * inference if inference is not None else self._prior(fam)

    def _eval_speed(self, fam: str) -> float:
        inference = self._measured(fam, {**self.eval, **self.embed}, per_mode=False)
        if inference is not None:
            return inference
        if (v := self._measured(fam, self.train, per_mode=True)) is not None:
            return v / _TRAIN_OF_INFERENCE
        return self._prior(fam) / _TRAIN_OF_INFERENCE

    def train_s(self, cfg: TrialConfig) -> float:
        if cfg.key in self.train:
            return self.train[cfg.key] * self._slow
        macs = gmacs(cfg.backbone, cfg.image_size) * self._factor(cfg.key)
        return macs / self._train_speed(family(cfg.backbone)) * self._slow

    def eval_s(self, cfg: TrialConfig) -> float:
        if cfg.key in self.eval:
            return self.eval[cfg.key] * self._slow
        macs = gmacs(cfg.backbone, cfg.image_size)
        return macs / self._eval_speed(family(cfg.backbone)) * self._slow

    def embed_s(self, cfg: TrialConfig) -> float:
        """Seconds per image through the whole network (the frozen part, for cached
        activations) without training."""
        key = f"{cfg.backbone}/{cfg.image_size}"
        if key in self.embed:
            return self.embed[key] * self._slow
        if cfg.key in self.cached:  # its eval rate is the top stages': not a whole forward
            macs = gmacs(cfg.backbone, cfg.image_size)
            return macs / self._eval_speed(family(cfg.backbone)) * self._slow
        return self.eval_s(cfg)

    def decode_s(self) -> float:
        """Decoding runs in worker processes on every core, whatever the trial's threads."""
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
        if cfg.mode == "linear":  # the head, and its cross-validation once measured (.cv)
            folds = n_train * self.cv.get(cfg.backbone, 0.0) * self._slow
            return fixed + n_embed * self.embed_s(cfg) + 1.0 + 1e-6 * n_train + folds
        per_epoch = n_train * self.train_s(cfg) + n_eval * self.eval_s(cfg)
        return fixed + n_embed * self.embed_s(cfg) + epochs * per_epoch


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
    n_cache: int = 0,
    min_images: int = MIN_TRAIN_IMAGES,
    min_epochs: int = 2,
) -> Fidelity | None:
    """The most training data (then the most epochs, up to ``cfg.epochs``) that fits in
    ``seconds``; ``None`` when even the smallest trial does not fit. ``n_embedded``: rows a
    linear trial finds embedded; ``n_cache``: activation rows an image trial must compute
    first (:mod:`.toptune`)."""
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
    fixed = cost.trial_seconds(
        cfg, n_train=0, n_eval=0, epochs=0, n_decode=n_decode, n_embed=n_cache
    )
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
    cost: CostModel,
    cfg: TrialConfig,
    *,
    seconds: float,
    n_train: int,
    n_eval: int,
    n_decode: int,
    n_cache: int = 0,
) -> int:
    """Whole epochs over ``n_train`` images that fit in ``seconds``."""
    fixed = cost.trial_seconds(
        cfg, n_train=0, n_eval=0, epochs=0, n_decode=n_decode, n_embed=n_cache
    )
    per_epoch = n_train * cost.train_s(cfg) + n_eval * cost.eval_s(cfg)
    return max(0, math.floor((seconds - fixed) / per_epoch)) if per_epoch > 0 else 0


FINAL_SHARE_MAX = 0.8  # of the search time, for the final retraining
FINAL_MIN_EPOCHS = 3  # a final retraining with fewer epochs is not worth it
REFIT_MARGIN, REFIT_SLACK_S = 1.1, 5.0  # the time kept for a refit: its estimate, and more
EXPLORE_FIRST_SHARE = 3  # an exploration trial gets at most 1/3 of the exploration time
EXPLORE_TRIAL_GROWTH = 1.5  # or 1.5 times the first trial's, which also fixes the fidelity
THREADS_TTL_S = 5.0  # a sample of the machine's load is reused this long


class Planner:
    """Plans the trials of one run: threads, training images, epochs and deadlines.

    In a timed search every exploration trial trains on the same number of images (fixed by
    the first trial, sized to a third of the exploration time; all of them when that fits)
    and evaluates the validation images that rank trials; the final trial retrains the best
    configuration on everything with the epochs the time left holds, or, when the best already
    had every training image, its refit on training and validation images is kept aside.
    """

    def __init__(self, rt: Any, space: Any, budget: Any, state: Any) -> None:
        self.rt, self.space, self.budget, self.state = rt, space, budget, state
        self.data = rt.data
        self.cost = CostModel(gpu=rt.gpu, state=state.costs)
        self._threads: tuple[int | None, float] | None = None

    # ---- facts ----------------------------------------------------------------------------

    def threads(self) -> int | None:
        """CPU threads for the next trial (sampled now, fixed when the run must be
        reproducible); costs are planned for them."""
        from autovision.search.trainer import cpu_threads

        now = time.monotonic()
        if self._threads is None or now - self._threads[1] > THREADS_TTL_S:
            threads = None if self.rt.gpu else cpu_threads(sample=not self.rt.deterministic)
            self._threads = (threads, now)
        self.cost.use_threads(self._threads[0])
        return self._threads[0]

    def record(self, cfg: TrialConfig, timings: dict[str, float] | None) -> None:
        """Learn from a finished trial (and from any image cache it built)."""
        while self.rt.measured:
            _, seconds = self.rt.measured.popitem()
            self.cost.observe_decode(seconds, len(self.data.items))
        if timings:
            self.n_embed(cfg, 0)  # notes a cached finetune_top key before its rates
            self.cost.observe(cfg, timings)
        self.state.costs = self.cost.to_dict()

    def n_decode(self, cfg: TrialConfig) -> int:
        """Images still to decode for ``cfg``'s size (0 when its pixel cache exists)."""
        from autovision.search.cache import pixels_path
        from autovision.search.trainer import preprocessing_for

        spec = preprocessing_for(cfg)
        exists = pixels_path(self.rt.ws, self.data.items, spec).exists()
        return 0 if exists else len(self.data.items)

    def n_embed(self, cfg: TrialConfig, n_train: int) -> int:
        """Embeddings still to compute for a trial on ``n_train`` images: a linear trial's,
        or the activations a ``finetune_top`` trial trains on (:mod:`.toptune`)."""
        from autovision.search import toptune
        from autovision.search.linear import embedded_rows

        if cfg.mode == "linear":
            return max(0, len(self.data.val) + n_train - embedded_rows(self.rt, cfg))
        if not toptune.applies(self.rt, cfg):
            return 0
        self.cost.cached.add(cfg.key)  # priced as the top stages only
        return toptune.rows_missing(self.rt, cfg, n_train)

    def eval_idx(self, final: bool) -> Any:
        """Validation images a trial evaluates: in a timed exploration at most
        ``SELECTION_VAL_MAX`` (those that rank trials), else all of them (``None``)."""
        data = self.data
        if final or not self.budget.timed or len(data.val_select) >= len(data.val):
            return None
        return data.val_select

    def export_s(self, cfg: TrialConfig) -> float:
        """Seconds to keep for writing ``cfg``'s package (and re-scoring it on all of the
        validation images when trials were ranked on part of them)."""
        seconds = 0.5 + _EXPORT_S[family(cfg.backbone)]
        if self.eval_idx(final=False) is not None:  # through the whole network
            seconds += len(self.data.val) * self.cost.embed_s(cfg)
        return seconds

    # ---- plans ----------------------------------------------------------------------------

    def final_wanted(
        self, cfg: TrialConfig | None, *, best_full: bool, search_total: float, search_left: float
    ) -> float:
        """Seconds to keep for the last training of ``cfg``, the best so far (0: none):
        its refit on training and validation images when it already had all the training
        images (``best_full``), else its retraining on all of them."""
        if cfg is None or not self.budget.timed:
            return 0.0
        if best_full:  # kept aside even once trials overran into it (the refit is then skipped)
            need = self.refit_reserve(cfg, cfg.epochs)
            return need if need <= FINAL_SHARE_MAX * search_total else 0.0
        if self.budget.trials is not None:
            return 0.0
        n_val, n_tr = len(self.data.val), self.data.profile.n_train
        if cfg.mode == "linear":
            need = least = self.cost.trial_seconds(
                cfg, n_train=n_tr, n_eval=n_val, epochs=1, n_embed=self.n_embed(cfg, n_tr)
            )
        else:
            epochs = max(self.space.epochs[1], cfg.epochs)
            kw = {"n_train": n_tr, "n_eval": n_val, "n_embed": self.n_embed(cfg, n_tr)}
            need = self.cost.trial_seconds(cfg, epochs=epochs, **kw)
            least = self.cost.trial_seconds(cfg, epochs=min(FINAL_MIN_EPOCHS, cfg.epochs), **kw)
        keep = min(need, FINAL_SHARE_MAX * max(0.0, search_total), search_left)
        return keep if keep >= least else 0.0  # no room for a final retraining: explore on

    def refit_seconds(self, cfg: TrialConfig, epochs: int) -> float:
        """Estimated time to refit ``cfg`` for ``epochs`` on the training and validation
        images (scored once)."""
        n_val, n_tr = len(self.data.val), self.data.profile.n_train
        return self.cost.trial_seconds(
            cfg,
            n_train=n_tr + n_val,
            n_eval=n_val // max(1, epochs),
            epochs=1 if cfg.mode == "linear" else epochs,
            n_decode=self.n_decode(cfg),
            n_embed=self.n_embed(cfg, n_tr),
        )

    def refit_reserve(self, cfg: TrialConfig, epochs: int) -> float:
        """The time kept aside for a refit: its estimate with a margin for the trials that
        end past their deadline (a check between batches) or their estimate."""
        return REFIT_MARGIN * self.refit_seconds(cfg, epochs) + REFIT_SLACK_S

    def refit(self, cfg: TrialConfig, *, epochs: int, search_left: float, **kw: Any) -> Any:
        """The plan that refits ``cfg`` on the training and validation images for ``epochs``
        (its trial's best epoch, or L-BFGS round for a linear head); ``None`` when it does not
        fit the time left. ``kw``: ``schedule_epochs``, ``averaged``, ``seed``, ``heartbeat``
        for the :class:`TrialPlan`."""
        from autovision.search.trainer import TrialPlan

        timed = self.budget.timed
        threads = self.threads()
        if timed and self.refit_seconds(cfg, epochs) > search_left:
            return None
        return TrialPlan(
            n_train=self.data.profile.n_train,
            epochs=max(1, epochs),
            deadline=time.monotonic() + max(0.0, search_left) if timed else None,
            eval_idx=None,
            patience=epochs + 1,
            threads=threads,
            refit=True,
            **kw,
        )

    def explore(
        self,
        cfg: TrialConfig,
        seconds: float,
        *,
        total: float,
        search_left: float,
        refit_left: float | None = None,
        **kw: Any,
    ) -> Any:
        """The plan of an exploration trial that fits ``seconds`` (``None``: it does not fit
        and is not started). ``total``: the exploration time, fixed with the first trial.
        ``refit_left``: the time that a trial on every training image and its refit (should
        it become the best) must fit together. ``kw``: ``seed``, ``heartbeat`` for the
        :class:`TrialPlan`."""
        from autovision.search.trainer import TrialPlan

        threads = self.threads()
        eval_idx = self.eval_idx(final=False)
        n_eval = len(self.data.val) if eval_idx is None else len(eval_idx)
        n_tr = self.data.profile.n_train
        patience = max(3, cfg.epochs // 3)
        if not self.budget.timed:
            return TrialPlan(n_tr, cfg.epochs, None, eval_idx, patience, threads=threads, **kw)
        fixed = self.state.explore.get("n_train")
        n_cache = 0 if cfg.mode == "linear" else self.n_embed(cfg, fixed or n_tr)
        if fixed:  # a trial's share of the time; a cache it builds for later trials is extra
            first, total = self.state.explore["seconds"], self.state.explore["total"]
            share = max(EXPLORE_TRIAL_GROWTH * first, total / EXPLORE_FIRST_SHARE)
            seconds = min(seconds, share + n_cache * self.cost.embed_s(cfg))
        n_decode = self.n_decode(cfg)
        fid = fit_fidelity(
            self.cost,
            cfg,
            seconds=seconds,
            n_train_max=fixed or n_tr,
            min_images=fixed or MIN_TRAIN_IMAGES,
            n_eval=n_eval,
            n_decode=n_decode,
            n_embedded=len(self.data.val) + n_tr - self.n_embed(cfg, n_tr),
            n_val=len(self.data.val),
            n_cache=n_cache,
        )
        if fid is None:
            return None
        if fid.n_train >= n_tr and refit_left is not None and cfg.mode != "linear":
            # the most epochs (from the fitted ones down) with which its refit (as long at
            # most) fits too; as fitted when none leaves that room (then no refit)
            kw_s = {"n_train": fid.n_train, "n_eval": n_eval, "n_decode": n_decode}
            for e in range(fid.epochs, min(2, fid.epochs) - 1, -1):
                t = self.cost.trial_seconds(cfg, epochs=e, n_embed=n_cache, **kw_s)
                if t + self.refit_reserve(cfg, e) <= refit_left:
                    fid = Fidelity(fid.n_train, e, t)
                    break
        if not fixed:
            self.state.explore = {"n_train": fid.n_train, "seconds": fid.seconds, "total": total}
        # estimates from priors alone (nothing measured yet) can be far off: more slack, up to
        # the time offered to this trial
        limit = 1.5 * fid.seconds + 5.0
        if not (self.cost.train or self.cost.eval or self.cost.embed):
            limit = max(limit, min(3.0 * fid.seconds + 5.0, seconds))
        limit = min(limit, max(0.0, search_left))
        return TrialPlan(
            fid.n_train,
            fid.epochs,
            time.monotonic() + limit,
            eval_idx,
            patience,
            threads=threads,
            **kw,
        )

    def final(
        self, cfg: TrialConfig, *, trained_on: int, epochs_run: int, search_left: float, **kw: Any
    ) -> Any:
        """The plan that retrains ``cfg`` (the best, trained on ``trained_on`` images for
        ``epochs_run`` epochs) on all the data, or ``None`` when that is not worth it."""
        from autovision.search.trainer import TrialPlan

        threads = self.threads()
        n_tr, n_val = self.data.profile.n_train, len(self.data.val)
        full_data = trained_on >= n_tr
        if cfg.mode == "linear":
            est = self.cost.trial_seconds(
                cfg, n_train=n_tr, n_eval=n_val, epochs=1, n_embed=self.n_embed(cfg, n_tr)
            )
            if full_data or est > search_left:
                return None
            epochs = 1
        else:
            fit = epochs_that_fit(
                self.cost,
                cfg,
                seconds=search_left,
                n_train=n_tr,
                n_eval=n_val,
                n_decode=self.n_decode(cfg),
                n_cache=self.n_embed(cfg, n_tr),
            )
            epochs = min(max(self.space.epochs[1], cfg.epochs), fit)
            if epochs < min(FINAL_MIN_EPOCHS, cfg.epochs) or (full_data and epochs <= epochs_run):
                return None
        return TrialPlan(
            n_train=n_tr,
            epochs=epochs,
            deadline=time.monotonic() + max(0.0, search_left),
            eval_idx=None,
            patience=max(4, epochs // 3),
            threads=threads,
            **kw,
        )
