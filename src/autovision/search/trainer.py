"""One trial of image training (``finetune_top``, ``finetune_full``, ``scratch``).

Trains on cached uint8 pixels with batched augmentation, keeps an exponential moving average
of the weights (timm's ``ModelEmaV3``), evaluates both on validation after each epoch and
reports the better score (the search prunes through it), keeps the best weights in an atomic
safetensors checkpoint, stops early when validation stops improving, and never runs past its
deadline. CUDA with bf16/fp16 autocast when present; CPU otherwise, on every core that
other processes leave free (see :func:`cpu_threads`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from autovision.models.preprocess import Preprocessing
from autovision.models.registry import get_backbone_cfg
from autovision.search import cache, metrics
from autovision.search.augment import BatchAugment, to_input
from autovision.search.modes import (
    BaseModel,
    build_model,
    set_trainable,
    state_dict_cpu,
    train_mode,
)
from autovision.search.prepare import TrainData
from autovision.search.space import TrialConfig

HEARTBEAT_S = 5.0
MIN_STEPS = 50  # updates per epoch wanted on small data
MIN_BATCH = 16
EMA_DECAY = 0.9995  # cap of timm's warm-up EMA decay (about 0.99 after 1k steps, 0.997 after 5k)
ENV_THREADS = "AUTOVISION_THREADS"
EpochCallback = Callable[[int, float], bool]  # (epoch, score) -> stop (pruned)


def cpu_threads(sample: bool = True) -> int:
    """Threads for the next trial: every core (``AUTOVISION_THREADS`` overrides), minus the
    cores other processes keep busy right now (sampled for 0.1 s while this one is idle;
    not with ``sample=False``, for reproducible runs): oversubscribed OpenMP threads wait on
    each other at every operation and run many times slower than fewer threads."""
    cores = os.cpu_count() or 1
    raw = os.environ.get(ENV_THREADS, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), cores)
    if not sample:
        return cores
    try:
        import psutil

        busy = psutil.cpu_percent(interval=0.1) / 100.0 * cores
    except Exception:  # noqa: BLE001 - no measurement: assume the machine is ours
        busy = 0.0
    return max(1, min(cores, cores - math.ceil(busy - 0.5)))


def preprocessing_for(cfg: TrialConfig) -> Preprocessing:
    bcfg = get_backbone_cfg(cfg.backbone)
    return Preprocessing(cfg.image_size, mean=bcfg.mean, std=bcfg.std, resize=cfg.resize)


@dataclass
class Runtime:
    """What every trial of a search shares: workspace, data, device, caches, base model."""

    ws: Any
    data: TrainData
    device: torch.device
    deterministic: bool = False
    base: BaseModel | None = None
    measured: dict[str, float] = field(default_factory=dict)  # filled by cache loads

    @classmethod
    def create(cls, ws: Any, data: TrainData, *, deterministic: bool = False, **kw: Any) -> Runtime:
        if torch.cuda.is_available():
            if deterministic:
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            device = torch.device("cuda")
            torch.backends.cudnn.benchmark = not deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        else:
            device = torch.device("cpu")
            torch.set_num_threads(os.cpu_count() or 1)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        return cls(ws=ws, data=data, device=device, deterministic=deterministic, **kw)

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def use_threads(self, threads: int | None) -> None:
        if threads and not self.gpu and threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.gpu:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def pixels(self, spec: Preprocessing) -> np.ndarray:
        """uint8 [n_val + n_train, S, S, 3] in :attr:`TrainData.items` order (cached)."""
        fresh = not cache.pixels_path(self.ws, self.data.items, spec).exists()
        t = time.monotonic()
        arr = cache.load_pixels(self.ws, self.data.items, spec)
        if fresh:
            self.measured[f"decoded/{spec.input_size}"] = time.monotonic() - t
        return arr


@dataclass
class TrialPlan:
    """Resources the search gives a trial."""

    n_train: int  # a prefix of ``data.order``
    epochs: int
    deadline: float | None = None  # time.monotonic()
    eval_idx: np.ndarray | None = None  # validation indices evaluated (None: all)
    patience: int = 5
    seed: int = 0
    heartbeat: Callable[[], None] | None = None  # called every few seconds while training
    threads: int | None = None  # CPU threads (None: leave as is)
    # a refit: validation images train too, and it replays its trial's training (the same
    # learning-rate schedule, the weights or their average as the trial chose) up to the
    # trial's best epoch, scored only then (a refit cut by its deadline is not kept)
    refit: bool = False
    schedule_epochs: int | None = None  # the learning-rate schedule's length (None: epochs)
    averaged: bool = False  # a refit keeps the weights' moving average (image path)

    def evaluates(self, epoch: int, stopped: str) -> bool:
        """Whether ``epoch`` ends with an evaluation."""
        return not self.refit or (epoch >= self.epochs and stopped != "deadline")


@dataclass
class TrialOutcome:
    score: float | None
    metrics: dict[str, float]
    thresholds: list[float] | None
    epochs_run: int
    best_epoch: int
    seconds: float
    stopped: str  # done | early_stop | deadline | pruned
    timings: dict[str, float] = field(default_factory=dict)
    averaged: bool = False  # the best epoch's weights are the moving average's
    ranking: dict[str, Any] | None = None  # cross-validated score (search.cv), else None


class _ScheduleClock:
    """The learning-rate schedule's position: the step count, or the share of the time to the
    deadline if that is further along, so the learning rate anneals by the deadline even when
    the machine turns out slower than planned."""

    def __init__(self, total_steps: int, deadline: float | None) -> None:
        self.total, self.deadline = total_steps, deadline
        self.start = time.monotonic()
        self.eval_s = 0.0  # the last evaluation's duration, kept before the deadline

    def progress(self, step: int) -> int:
        if self.deadline is None:
            return step
        span = self.deadline - self.eval_s - self.start
        if span <= 0:
            return self.total
        by_time = int(self.total * (time.monotonic() - self.start) / span)
        return min(self.total, max(step, by_time))


class Heartbeat:
    """Calls ``fn`` (when there is one) at most every ``HEARTBEAT_S`` seconds."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self.fn, self.last = fn, time.monotonic()

    def __call__(self) -> None:
        if self.fn is not None and time.monotonic() - self.last > HEARTBEAT_S:
            self.last = time.monotonic()
            self.fn()


def effective_batch_size(batch_size: int, n_train: int) -> int:
    """``batch_size``, smaller on small data so that an epoch has ``MIN_STEPS`` updates (few
    large batches leave weights and BatchNorm statistics untrained)."""
    return max(2, min(batch_size, n_train, max(MIN_BATCH, n_train // MIN_STEPS)))


def save_checkpoint(
    folder: Path, state: dict[str, torch.Tensor], probs: np.ndarray, idx: np.ndarray
) -> None:
    """Best weights and their validation probabilities, each written then renamed (the weights
    encrypted when a key is configured, as in a model package)."""
    from safetensors.torch import save

    from autovision.models.package import write_model_file

    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    for name, write in (
        ("val_probs.npy", lambda fh: np.save(fh, probs.astype(np.float32), allow_pickle=False)),
        ("val_index.npy", lambda fh: np.save(fh, idx.astype(np.int64), allow_pickle=False)),
    ):
        tmp = folder / f".{name}.{tag}.tmp"
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, folder / name)
    write_model_file(folder / "best.safetensors", save(state))


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    from safetensors.torch import load

    from autovision.models.package import read_model_file

    return (
        load(read_model_file(folder / "best.safetensors")),
        np.load(folder / "val_probs.npy", allow_pickle=False),
        np.load(folder / "val_index.npy", allow_pickle=False),
    )


def selection_positions(data: TrainData, eval_idx: np.ndarray) -> np.ndarray:
    """Positions in ``eval_idx`` of the validation images that rank trials."""
    pos = np.searchsorted(eval_idx, data.val_select)
    return pos[
        (pos < len(eval_idx)) & (eval_idx[np.minimum(pos, len(eval_idx) - 1)] == data.val_select)
    ]


def improves(score: float, loss: float | None, best: tuple[float, int], best_loss: float) -> bool:
    """Whether an evaluation beats the best so far: a higher selection score, or the same
    score with a lower log loss (a small validation split saturates accuracy within an
    epoch or two; the first tied epoch is then often a barely trained model, and a refit
    replayed to it is no better)."""
    if score > best[0] + 1e-9:
        return True
    return score >= best[0] - 1e-9 and loss is not None and loss < best_loss - 1e-6


def probs_loss(m: dict) -> float | None:
    """The log loss in the metrics of :func:`score_probs` (``None`` when not computed)."""
    loss = m.get("log_loss")
    return float(loss) if loss is not None and np.isfinite(loss) else None


def score_probs(data: TrainData, eval_idx: np.ndarray, probs: np.ndarray) -> tuple[float, dict]:
    """Selection score on the ranking images; all metrics on every evaluated image."""
    y = data.y_val[eval_idx]
    _, m = metrics.evaluate(data.task, y, probs)
    sel = selection_positions(data, eval_idx)
    if len(sel) == len(eval_idx):
        return m[metrics.PRIMARY[data.task]], m
    score, _ = metrics.evaluate(data.task, y[sel], probs[sel])
    return score, m


@torch.inference_mode()
def predict(
    rt: Runtime,
    model: torch.nn.Module,
    px: np.ndarray,
    idx: np.ndarray,
    spec: Preprocessing,
    batch: int,
) -> np.ndarray:
    """Probabilities for rows ``idx`` of ``px``."""
    model.eval()
    mean = torch.tensor(spec.mean, device=rt.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=rt.device).view(1, 3, 1, 1)

    def logits(rows: np.ndarray) -> torch.Tensor:
        xb = torch.from_numpy(np.ascontiguousarray(px[rows])).to(rt.device)
        return model(to_input(xb, mean, std))

    return batched_probs(rt, logits, idx, batch)


def batched_probs(
    rt: Runtime, logits: Callable[[np.ndarray], torch.Tensor], idx: np.ndarray, batch: int
) -> np.ndarray:
    """Probabilities (sigmoid or softmax by task) for rows ``idx``, ``batch`` at a time;
    ``logits(rows)`` computes theirs (under autocast)."""
    out = []
    for i in range(0, len(idx), batch):
        with rt.autocast():
            z = logits(idx[i : i + batch]).float()
        act = torch.sigmoid(z) if rt.data.multi_label else torch.softmax(z, 1)
        out.append(act.cpu().numpy())
    n_labels = len(rt.data.labels)
    return np.concatenate(out) if out else np.zeros((0, n_labels), np.float32)


def _loss(
    logits: torch.Tensor, target: torch.Tensor, multi: bool, w: torch.Tensor | None
) -> torch.Tensor:
    logits = logits.float()
    if multi:
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (loss * w).mean() if w is not None else loss.mean()
    per = -(target * F.log_softmax(logits, 1)).sum(1)
    if w is None:
        return per.mean()
    sw = target @ w
    return (per * sw).sum() / sw.sum()


def train_trial(
    rt: Runtime,
    cfg: TrialConfig,
    plan: TrialPlan,
    folder: Path,
    on_epoch: EpochCallback | None = None,
) -> TrialOutcome:
    """Train ``cfg`` within ``plan``; the best epoch's weights end in ``folder``."""
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    t0 = time.monotonic()
    data, dev = rt.data, rt.device
    rt.use_threads(plan.threads)
    torch.manual_seed(plan.seed)
    rng = np.random.default_rng(plan.seed)
    spec = preprocessing_for(cfg)
    px = rt.pixels(spec)
    n_val = len(data.val)
    eval_idx = np.arange(n_val) if plan.eval_idx is None else np.asarray(plan.eval_idx)
    rows, y_rows = data.fit_rows(plan.n_train, refit=plan.refit)
    model = build_model(cfg.backbone, data.labels, drop_rate=cfg.drop_rate, base=rt.base).to(dev)
    model = model.to(memory_format=torch.channels_last)
    set_trainable(model, cfg.mode)
    opt = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    bs = effective_batch_size(cfg.batch_size, len(rows))
    steps_per_epoch = max(1, len(rows) // bs)
    sched, clock = schedule(opt, cfg.lr, plan, steps_per_epoch)
    scaler = grad_scaler(rt)
    aug = BatchAugment(
        mean=spec.mean,
        std=spec.std,
        num_classes=len(data.labels),
        multi_label=data.multi_label,
        strength=cfg.aug_strength,
        hflip=cfg.hflip,
        auto_augment=cfg.auto_augment,
        label_smoothing=cfg.label_smoothing,
        mix=cfg.mix,
        small=data.profile.small,
        grayscale=data.profile.grayscale,
        device=dev,
    )
    weights = None
    if cfg.imbalance == "weighted_loss":
        weights = torch.from_numpy(data.class_weights()).to(dev)
    sample_p = None
    if cfg.imbalance == "balanced_sampler":
        sw = data.sample_weights(y_rows)
        sample_p = sw / sw.sum()
    y_all = torch.from_numpy(y_rows)
    eval_bs = max(bs, min(4 * bs, 512 if cfg.image_size <= 64 else 64))
    best, best_loss = (-np.inf, -1), np.inf
    timings = {"train_s": 0.0, "train_images": 0, "eval_s": 0.0, "eval_images": 0}
    timings["threads"] = torch.get_num_threads()
    timings["batch_size"] = bs
    ema = ModelEmaV3(model, decay=EMA_DECAY, use_warmup=True)
    stopped, epoch, step, last_loss, beat = "done", 0, 0, 0.0, Heartbeat(plan.heartbeat)
    averaged, n = False, len(rows)
    for epoch in range(1, plan.epochs + 1):
        order = rng.choice(n, size=n, p=sample_p) if sample_p is not None else rng.permutation(n)
        train_mode(model)
        te = time.monotonic()
        seen = 0
        for b in range(steps_per_epoch):
            if plan.deadline is not None and time.monotonic() > plan.deadline:
                stopped = "deadline"
                break
            batch = np.sort(order[b * bs : (b + 1) * bs])
            xb = torch.from_numpy(np.ascontiguousarray(px[rows[batch]]))
            x, target = aug(xb, y_all[batch])
            with rt.autocast():
                logits = model(x)
            loss = _loss(logits, target, data.multi_label, weights)
            update(loss, opt, scaler)
            step += 1
            ema.update(model, step=step)
            sched.step_update(num_updates=clock.progress(step))
            beat()
            seen += len(batch)
            last_loss = float(loss.detach())
        timings["train_s"] += time.monotonic() - te
        timings["train_images"] += seen
        if (verdict := before_eval(plan, epoch, stopped, last_loss, best)) == "skip":
            continue
        if verdict is not None:
            stopped = verdict
            break
        te = time.monotonic()
        score, loss, probs, chosen = -np.inf, None, None, model
        # the weights, and their moving average (a refit keeps what its trial chose)
        candidates = (model, ema.module)
        if plan.refit:
            candidates = (ema.module,) if plan.averaged else (model,)
        for candidate in candidates:
            p = predict(rt, candidate, px, eval_idx, spec, eval_bs)
            if not np.isfinite(p).all():  # overflowed weights: never a candidate
                continue
            sc, m = score_probs(data, eval_idx, p)
            if probs is None or improves(sc, probs_loss(m), (score, 0), loss or np.inf):
                score, loss, probs, chosen = sc, probs_loss(m), p, candidate
        if probs is None:
            stopped = "diverged"
            break
        clock.eval_s = time.monotonic() - te
        timings["eval_s"] += clock.eval_s / 2
        timings["eval_images"] += len(eval_idx)
        if improves(score, loss, best, best_loss):
            best, best_loss, averaged = (score, epoch), loss or np.inf, chosen is not model
            save_checkpoint(folder, state_dict_cpu(chosen), probs, eval_idx)
        if (why := after_epoch(plan, on_epoch, epoch, score, best, stopped)) is not None:
            stopped = why
            break
    out = _outcome(rt, folder, best, epoch, stopped, t0, timings)
    out.averaged = averaged
    return out


def schedule(opt: Any, lr: float, plan: TrialPlan, steps_per_epoch: int) -> tuple[Any, Any]:
    """The learning-rate schedule of ``plan`` (:func:`cosine_schedule` over its
    ``schedule_epochs``) and the clock that steps it (by time too, except for a refit, which
    replays its trial's schedule)."""
    total = steps_per_epoch * (plan.schedule_epochs or plan.epochs)
    clock = _ScheduleClock(total, None if plan.refit else plan.deadline)
    return cosine_schedule(opt, lr, total, steps_per_epoch), clock


def cosine_schedule(opt: Any, lr: float, total: int, steps_per_epoch: int) -> Any:
    """timm's cosine decay to 1% of ``lr`` over ``total`` updates, after a linear warm-up of
    an epoch (at most a tenth of the updates)."""
    from timm.scheduler import CosineLRScheduler

    return CosineLRScheduler(
        opt,
        t_initial=total,
        lr_min=lr * 0.01,
        warmup_t=min(steps_per_epoch, total // 10),
        warmup_lr_init=lr * 0.01,
        t_in_epochs=False,
    )


def grad_scaler(rt: Runtime) -> Any:
    """A loss scaler for float16 autocast (GPUs without bfloat16); ``None`` otherwise."""
    return torch.amp.GradScaler("cuda") if rt.gpu and not torch.cuda.is_bf16_supported() else None


def update(loss: torch.Tensor, opt: Any, scaler: Any) -> None:
    """One optimiser step on ``loss`` (through the loss scaler when there is one)."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()


def before_eval(
    plan: TrialPlan, epoch: int, stopped: str, last_loss: float, best: tuple[float, int]
) -> str | None:
    """What comes of a trained ``epoch`` before its evaluation: ``"diverged"`` (non-finite
    loss) or ``"deadline"`` (passed, and an evaluated epoch is kept: evaluate only when there
    is none yet) end training, ``"skip"`` goes to the next epoch unevaluated (a refit's),
    ``None`` evaluates."""
    if not np.isfinite(last_loss):
        return "diverged"
    if stopped == "deadline" and best[1] >= 0:
        return "deadline"
    return None if plan.evaluates(epoch, stopped) else "skip"


def after_epoch(
    plan: TrialPlan,
    on_epoch: EpochCallback | None,
    epoch: int,
    score: float,
    best: tuple[float, int],
    stopped: str,
) -> str | None:
    """Why training ends after an evaluated ``epoch`` (``None``: it goes on): its deadline
    passed during the epoch, the search pruned it, validation stopped improving, or the
    deadline passed now."""
    if stopped == "deadline":
        return stopped
    if on_epoch is not None and on_epoch(epoch, score):
        return "pruned"
    if epoch - best[1] >= plan.patience:
        return "early_stop"
    if plan.deadline is not None and time.monotonic() > plan.deadline:
        return "deadline" if epoch < plan.epochs else "done"
    return None


def _outcome(
    rt: Runtime,
    folder: Path,
    best: tuple[float, int],
    epochs_run: int,
    stopped: str,
    t0: float,
    timings: dict,
) -> TrialOutcome:
    seconds = time.monotonic() - t0
    if best[1] < 0:
        return TrialOutcome(None, {}, None, epochs_run, -1, seconds, stopped, timings)
    _, probs, idx = load_checkpoint(folder)
    score, m = score_probs(rt.data, idx, probs)
    th = None
    if rt.data.multi_label:
        th = [float(v) for v in metrics.best_thresholds(rt.data.y_val[idx], probs)]
    return TrialOutcome(score, m, th, epochs_run, best[1], seconds, stopped, timings)
