"""``finetune_top`` on cached activations: the frozen stages run once per image, the top
stages every epoch.

Below the top stages nothing trains and BatchNorm keeps its statistics, so what they output
for an image never changes. It is computed once and kept (float16, in the embedding cache)
for the clean image (*view 0*: validation and training images) and for ``VIEWS`` augmented
copies of every training image (random resized crop, rotation, colour jitter and flips of
:class:`~autovision.search.augment.BatchAugment` at ``VIEW_STRENGTH``). Each epoch draws one
of the views per training image, so an epoch costs the top stages only: on openclipart
(Lite0, 224 px, 2 CPU cores) 28 s, where the frozen stages alone take 64 s per pass.

The head starts from a logistic fit on the clean embeddings (linear probing, then
fine-tuning: a random head's first gradients would distort the pretrained features), then the
top stages and the head train with AdamW, a warm-up and cosine decay, early stopping on
validation and the trial's deadline, like the image path; BatchNorm statistics stay the
pretrained ones in the top stages too (their scale and shift train).

A refit (the chosen configuration retrained on training and validation images, see
:mod:`.search`) trains the validation images on their clean view.

Used for models with EfficientNet stages when the cache fits ``CACHE_MAX_BYTES``; otherwise
``finetune_top`` trains on images (:func:`autovision.search.trainer.train_trial`).
Augmentation is the views': a trial's ``aug_strength``, ``auto_augment`` and ``mix`` do not
apply (:func:`effective_config` records what trains).
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import numpy as np
import torch

from autovision.models.registry import create_model, get_backbone_cfg
from autovision.search.augment import BatchAugment, soft_targets, to_input
from autovision.search.cache import EmbeddingCache
from autovision.search.linear import LogisticHead
from autovision.search.modes import (
    build_model,
    classifier_of,
    forward_lower,
    forward_upper,
    set_trainable,
    state_dict_cpu,
    top_split,
)
from autovision.search.space import TrialConfig
from autovision.search.trainer import (
    EpochCallback,
    Heartbeat,
    Runtime,
    TrialOutcome,
    TrialPlan,
    _loss,
    _outcome,
    after_epoch,
    batched_probs,
    before_eval,
    effective_batch_size,
    grad_scaler,
    improves,
    preprocessing_for,
    probs_loss,
    save_checkpoint,
    schedule,
    score_probs,
    update,
)

VIEWS = 3  # augmented copies of each training image, besides the clean one
VIEW_STRENGTH = 0.5  # BatchAugment strength of the views
CACHE_MAX_BYTES = 3 * 2**30  # larger caches: finetune_top trains on images
HEAD_L2 = 1e-2  # the starting head's L2 penalty (the linear mode's default)
HEAD_CHUNKS = 4  # of L-BFGS iterations for the starting head


@functools.lru_cache(maxsize=32)
def geometry(backbone: str, size: int) -> tuple[int, tuple[int, ...]] | None:
    """The split stage and the shape of one image's frozen-stage output (``None``: the model
    has no such split)."""
    model = create_model(backbone, num_classes=1, pretrained=False).eval()
    cut = top_split(model)
    if cut is None:
        return None
    with torch.inference_mode():
        return cut, tuple(forward_lower(model, torch.zeros(1, 3, size, size), cut).shape[1:])


def applies(rt: Runtime, cfg: TrialConfig) -> bool:
    """Whether ``cfg`` trains on cached activations (``finetune_top`` of a model with
    EfficientNet stages, a cache of at most ``CACHE_MAX_BYTES``)."""
    if cfg.mode != "finetune_top" or not get_backbone_cfg(cfg.backbone).pretrained:
        return False
    geo = geometry(cfg.backbone, cfg.image_size)
    if geo is None:
        return False
    rows = len(rt.data.val) + (1 + VIEWS) * rt.data.profile.n_train
    return rows * math.prod(geo[1]) * 2 <= CACHE_MAX_BYTES


def effective_config(cfg: TrialConfig) -> TrialConfig:
    """``cfg`` as it trains here: the views' augmentation, no auto-augment, no mixing."""
    return cfg.with_(aug_strength=VIEW_STRENGTH, auto_augment="none", mix="none")


def _cache_args(rt: Runtime, cfg: TrialConfig) -> list[tuple[list, str]]:
    """(items, key) of view 0 (validation, then training images in ``data.order``), then of
    the augmented views (training images only)."""
    data = rt.data
    geo = geometry(cfg.backbone, cfg.image_size)
    assert geo is not None
    base = cfg.backbone if rt.base is None else f"{cfg.backbone}@{rt.base.id}"
    base = f"{base}|stages{geo[0]}"
    train = [data.train[i] for i in data.order]
    out = [([*data.val, *train], base)]
    for v in range(1, VIEWS + 1):
        out.append((train, f"{base}|view{v}-s{VIEW_STRENGTH}-flip{int(cfg.hflip)}"))
    return out


def _caches(rt: Runtime, cfg: TrialConfig) -> list[EmbeddingCache]:
    spec = preprocessing_for(cfg)
    geo = geometry(cfg.backbone, cfg.image_size)
    assert geo is not None
    return [
        EmbeddingCache(rt.ws, items, spec, key, geo[1], np.float16)
        for items, key in _cache_args(rt, cfg)
    ]


def rows_missing(rt: Runtime, cfg: TrialConfig, n_train: int) -> int:
    """Activation rows still to compute for a trial on ``n_train`` training images."""
    spec = preprocessing_for(cfg)
    need = [len(rt.data.val) + n_train] + [n_train] * VIEWS
    done = [
        EmbeddingCache.rows_done(EmbeddingCache.path_for(rt.ws, items, spec, key))
        for items, key in _cache_args(rt, cfg)
    ]
    return sum(max(0, n - d) for n, d in zip(need, done, strict=True))


def _fill(
    rt: Runtime,
    cfg: TrialConfig,
    model: torch.nn.Module,
    cut: int,
    caches: list[EmbeddingCache],
    n_train: int,
    plan: TrialPlan,
) -> tuple[list[np.ndarray], int, float]:
    """The activation arrays (view 0 first), computing missing rows; rows computed and the
    seconds that took."""
    data, dev = rt.data, rt.device
    spec = preprocessing_for(cfg)
    n_val = len(data.val)
    mean = torch.tensor(spec.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=dev).view(1, 3, 1, 1)
    aug = BatchAugment(
        mean=spec.mean,
        std=spec.std,
        num_classes=len(data.labels),
        multi_label=data.multi_label,
        strength=VIEW_STRENGTH,
        hflip=cfg.hflip,
        small=data.profile.small,
        grayscale=data.profile.grayscale,
        device=dev,
    )
    need = [n_val + n_train] + [n_train] * VIEWS
    missing = sum(max(0, n - c.done) for n, c in zip(need, caches, strict=True))
    if missing == 0:
        return (
            [c.get(n, lambda a, b: np.zeros(0)) for n, c in zip(need, caches, strict=True)],
            0,
            0.0,
        )
    px = rt.pixels(spec)  # decoding is timed by the runtime, not as computing activations
    t0 = time.monotonic()
    rows0 = np.concatenate([np.arange(n_val), n_val + data.order])
    y_all = torch.from_numpy(data.y_train)
    out = []
    for v, (n, c) in enumerate(zip(need, caches, strict=True)):

        @torch.inference_mode()
        def compute(start: int, stop: int, v: int = v) -> np.ndarray:
            if plan.heartbeat is not None:
                plan.heartbeat()
            if v == 0:
                xb = torch.from_numpy(np.ascontiguousarray(px[rows0[start:stop]])).to(dev)
                x = to_input(xb, mean, std)
            else:  # the same views whichever trial computes them, and the trial's RNG untouched
                pos = data.order[start:stop]
                xb = torch.from_numpy(np.ascontiguousarray(px[n_val + pos]))
                with torch.random.fork_rng(devices=[dev] if rt.gpu else []):
                    torch.manual_seed(1_000_003 * v + start)
                    x, _ = aug(xb, y_all[pos])
            with rt.autocast():
                h = forward_lower(model, x, cut)
            return h.to(torch.float16).cpu().numpy()

        out.append(c.get(n, compute, batch=128 if rt.gpu else 32, deadline=plan.deadline))
    return out, missing, time.monotonic() - t0


def _start_head(
    rt: Runtime,
    cfg: TrialConfig,
    model: torch.nn.Module,
    cut: int,
    acts: np.ndarray,
    rows: np.ndarray,
    y_rows: np.ndarray,
) -> None:
    """Fit the classifier as a logistic head on the clean embeddings of the fitted rows."""
    data, dev = rt.data, rt.device
    emb = []
    with torch.inference_mode():
        for i in range(0, len(rows), 128):
            h = torch.from_numpy(np.array(acts[rows[i : i + 128]])).to(dev).float()
            with rt.autocast():
                emb.append(forward_upper(model, h, cut, pre_logits=True).float())
    x = torch.cat(emb)
    y = torch.from_numpy(y_rows).to(dev)
    w = torch.from_numpy(data.class_weights()).to(dev) if cfg.imbalance != "none" else None
    fit = LogisticHead(x, y, data, cfg.with_(l2=HEAD_L2, label_smoothing=0.0), w)
    for _ in range(HEAD_CHUNKS):
        fit.step()
    fit.fold_into(classifier_of(model))


def _freeze_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.inference_mode()
def _predict(
    rt: Runtime, model: torch.nn.Module, cut: int, acts: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    model.eval()

    def logits(rows: np.ndarray) -> torch.Tensor:
        h = torch.from_numpy(np.array(acts[rows])).to(rt.device).float()
        return forward_upper(model, h, cut)

    return batched_probs(rt, logits, idx, 128)


def train_top_cached(
    rt: Runtime,
    cfg: TrialConfig,
    plan: TrialPlan,
    folder: Path,
    on_epoch: EpochCallback | None = None,
) -> TrialOutcome:
    """Train ``cfg`` (``finetune_top``) within ``plan`` on cached activations; the best
    epoch's weights end in ``folder``. Raises ``TimeoutError`` when computing the
    activations runs past the deadline (what was computed stays cached)."""
    from timm.optim import create_optimizer_v2

    t0 = time.monotonic()
    cfg = effective_config(cfg)
    data, dev = rt.data, rt.device
    rt.use_threads(plan.threads)
    torch.manual_seed(plan.seed)
    rng = np.random.default_rng(plan.seed)
    model = build_model(cfg.backbone, data.labels, drop_rate=cfg.drop_rate, base=rt.base).to(dev)
    cut = top_split(model)
    assert cut is not None
    set_trainable(model, "finetune_top")
    model.eval()
    n_val, n = len(data.val), plan.n_train
    timings: dict[str, float] = {"train_s": 0.0, "train_images": 0, "eval_s": 0.0}
    timings.update(eval_images=0, threads=torch.get_num_threads())
    acts, computed, seconds = _fill(rt, cfg, model, cut, _caches(rt, cfg), n, plan)
    if computed:
        timings.update(embed_s=seconds, embed_images=computed)
    clean, views = acts[0], acts[1:]
    # rows of ``clean``; a training image's augmented views are row - n_val of ``views``
    # (a refit's validation images train on their clean view)
    fit, y_fit = data.fit_rows(n, refit=plan.refit, cached=True)
    if rt.base is None:
        _start_head(rt, cfg, model, cut, clean, fit, y_fit)
    eval_idx = np.arange(n_val) if plan.eval_idx is None else np.asarray(plan.eval_idx)
    opt = create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_fit = len(fit)
    bs = effective_batch_size(cfg.batch_size, n_fit)
    timings["batch_size"] = bs
    steps_per_epoch = max(1, n_fit // bs)
    sched, clock = schedule(opt, cfg.lr, plan, steps_per_epoch)
    weights = (
        torch.from_numpy(data.class_weights()).to(dev) if cfg.imbalance == "weighted_loss" else None
    )
    sample_p = None
    if cfg.imbalance == "balanced_sampler":
        sw = data.sample_weights(y_fit)
        sample_p = sw / sw.sum()
    scaler = grad_scaler(rt)
    y_rows = torch.from_numpy(y_fit)
    n_labels = len(data.labels)
    best, best_loss = (-np.inf, -1), np.inf
    stopped, epoch, step, last_loss, beat = "done", 0, 0, 0.0, Heartbeat(plan.heartbeat)
    for epoch in range(1, plan.epochs + 1):
        order = (
            rng.choice(n_fit, size=n_fit, p=sample_p)
            if sample_p is not None
            else rng.permutation(n_fit)
        )
        model.train()
        _freeze_bn(model)
        te, seen = time.monotonic(), 0
        for b in range(steps_per_epoch):
            if plan.deadline is not None and time.monotonic() > plan.deadline:
                stopped = "deadline"
                break
            pos = np.sort(order[b * bs : (b + 1) * bs])
            rows = fit[pos]
            pick = rng.integers(0, 1 + VIEWS, len(rows))
            pick[rows < n_val] = 0
            h = np.empty((len(rows), *clean.shape[1:]), np.float16)
            for v in np.unique(pick):
                sel = pick == v
                h[sel] = clean[rows[sel]] if v == 0 else views[v - 1][rows[sel] - n_val]
            target = soft_targets(
                y_rows[pos].to(dev), n_labels, cfg.label_smoothing, data.multi_label
            )
            with rt.autocast():
                logits = forward_upper(model, torch.from_numpy(h).to(dev).float(), cut)
            loss = _loss(logits, target, data.multi_label, weights)
            update(loss, opt, scaler)
            step += 1
            sched.step_update(num_updates=clock.progress(step))
            beat()
            seen += len(rows)
            last_loss = float(loss.detach())
        timings["train_s"] += time.monotonic() - te
        timings["train_images"] += seen
        if (verdict := before_eval(plan, epoch, stopped, last_loss, best)) == "skip":
            continue
        if verdict is not None:
            stopped = verdict
            break
        te = time.monotonic()
        probs = _predict(rt, model, cut, clean, eval_idx)
        if not np.isfinite(probs).all():
            stopped = "diverged"
            break
        score, m = score_probs(data, eval_idx, probs)
        clock.eval_s = time.monotonic() - te
        timings["eval_s"] += clock.eval_s
        timings["eval_images"] += len(eval_idx)
        if improves(score, probs_loss(m), best, best_loss):
            best, best_loss = (score, epoch), probs_loss(m) or np.inf
            save_checkpoint(folder, state_dict_cpu(model), probs, eval_idx)
        if (why := after_epoch(plan, on_epoch, epoch, score, best, stopped)) is not None:
            stopped = why
            break
    return _outcome(rt, folder, best, epoch, stopped, t0, timings)
