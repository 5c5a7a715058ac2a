"""The ``linear`` mode: a frozen backbone's cached embeddings and a logistic head.

The head is fitted by full-batch L-BFGS on standardised embeddings (L2 penalty, label
smoothing, class weights), scored on validation every few iterations, and folded back into
the model's ``classifier`` (standardisation included), so the package is one network.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from autovision.models.preprocess import Preprocessing
from autovision.search.augment import soft_targets, to_input
from autovision.search.cache import EmbeddingCache
from autovision.search.modes import build_model, classifier_of, set_trainable, state_dict_cpu
from autovision.search.prepare import TrainData
from autovision.search.space import TrialConfig
from autovision.search.trainer import (
    EpochCallback,
    Runtime,
    TrialOutcome,
    TrialPlan,
    _loss,
    _outcome,
    improves,
    preprocessing_for,
    probs_loss,
    save_checkpoint,
    score_probs,
)

CHUNK_STEPS = 25  # L-BFGS iterations between validation checks


def _cache_args(rt: Runtime, cfg: TrialConfig) -> tuple:
    """Rows: every validation image, then training images in ``data.order``."""
    data = rt.data
    items = [*data.val, *(data.train[i] for i in data.order)]
    key = cfg.backbone if rt.base is None else f"{cfg.backbone}@{rt.base.id}"
    return rt.ws, items, preprocessing_for(cfg), key


def embedding_cache(rt: Runtime, cfg: TrialConfig, dim: int) -> EmbeddingCache:
    return EmbeddingCache(*_cache_args(rt, cfg), dim)


def embedded_rows(rt: Runtime, cfg: TrialConfig) -> int:
    """Embedding rows already cached for ``cfg`` (validation first, then training)."""
    return EmbeddingCache.rows_done(EmbeddingCache.path_for(*_cache_args(rt, cfg)))


def fill_embeddings(
    emb_cache: EmbeddingCache,
    need: int,
    model: torch.nn.Module,
    pixels: Callable[[], np.ndarray],
    rows: np.ndarray,
    spec: Preprocessing,
    device: torch.device,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    heartbeat: Callable[[], None] | None = None,
    batch: int = 32,
    deadline: float | None = None,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, float, int]:
    """The first ``need`` rows of ``emb_cache``: pooled pre-logit features of ``model`` (frozen,
        eval mode) for rows ``rows`` of ``pixels()`` (uint8 [N, S, S, 3], only loaded when some
        row is missing), ``flip`` mirrored left-right; with the seconds spent and the rows computed.
    ``progress(rows_done, need)`` follows each batch.

        One function for the linear mode and the data checks (:mod:`autovision.checks`), so both
        fill the same cache the same way and neither embeds an image the other did. Raises
        :class:`TimeoutError` past ``deadline`` (what was computed stays cached)."""
    before = emb_cache.done
    if before >= min(need, emb_cache.n_items):
        return emb_cache.get(need, lambda a, b: np.zeros(0)), 0.0, 0
    px = pixels()
    t0 = time.monotonic()  # the embedding rate, decoding apart (the planner measures both)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def compute(start: int, stop: int) -> np.ndarray:
        if heartbeat is not None:
            heartbeat()
        xb = torch.from_numpy(np.ascontiguousarray(px[rows[start:stop]])).to(device)
        if flip:
            xb = xb.flip(2)  # [B, H, W, C]: mirror the width axis
        with autocast():
            f = model.forward_head(model.forward_features(to_input(xb, mean, std)), pre_logits=True)
        if progress is not None:
            progress(stop, need)
        return f.float().cpu().numpy()

    emb = emb_cache.get(need, compute, batch=batch, deadline=deadline)
    return emb, time.monotonic() - t0, min(need, emb_cache.n_items) - before


def train_linear(
    rt: Runtime,
    cfg: TrialConfig,
    plan: TrialPlan,
    folder: Path,
    on_epoch: EpochCallback | None = None,
    *,
    steps: int = 150,
) -> TrialOutcome:
    t0 = time.monotonic()
    data, dev = rt.data, rt.device
    rt.use_threads(plan.threads)
    torch.manual_seed(plan.seed)
    spec = preprocessing_for(cfg)
    model = build_model(cfg.backbone, data.labels, base=rt.base).to(dev)
    set_trainable(model, "linear")
    model.eval().to(memory_format=torch.channels_last)
    head = classifier_of(model)
    n_val = len(data.val)
    timings = {"embed_s": 0.0, "embed_images": 0, "threads": torch.get_num_threads()}
    emb_cache = embedding_cache(rt, cfg, head.in_features)
    need = n_val + plan.n_train
    emb, timings["embed_s"], timings["embed_images"] = fill_embeddings(
        emb_cache,
        need,
        model,
        lambda: rt.pixels(spec),  # decoded once per size, shared with the image modes
        np.concatenate([np.arange(n_val), n_val + data.order]),
        spec,
        dev,
        autocast=rt.autocast,
        heartbeat=plan.heartbeat,
        batch=128 if rt.gpu else 32,
        deadline=plan.deadline,
    )
    eval_idx = np.arange(n_val) if plan.eval_idx is None else np.asarray(plan.eval_idx)
    x_val = torch.from_numpy(np.ascontiguousarray(emb[eval_idx])).to(dev)
    fit_rows, y_fit = data.fit_rows(plan.n_train, refit=plan.refit, cached=True)
    x_tr = torch.from_numpy(np.array(emb[fit_rows[0] : need])).to(dev)  # contiguous rows
    y_tr = torch.from_numpy(y_fit).to(dev)
    w = torch.from_numpy(data.class_weights()).to(dev) if cfg.imbalance != "none" else None
    fit = LogisticHead(x_tr, y_tr, data, cfg, w)
    z_val = fit.standardise(x_val)
    best, stopped, chunk = (-np.inf, -1), "done", 0
    best_loss = np.inf
    # a refit runs the L-BFGS rounds after which its trial's head scored best, scored once
    chunks = plan.epochs if plan.refit else max(1, steps // CHUNK_STEPS)
    for chunk in range(1, chunks + 1):
        fit.step()
        if chunk < chunks and plan.refit:
            continue
        with torch.no_grad():
            logits = fit.lin(z_val)
            probs = (
                (torch.sigmoid(logits) if data.multi_label else torch.softmax(logits, 1))
                .cpu()
                .numpy()
            )
        score, m = score_probs(data, eval_idx, probs)
        if improves(score, probs_loss(m), best, best_loss):
            best, best_loss = (score, chunk), probs_loss(m) or np.inf
            fit.fold_into(head)
            save_checkpoint(folder, state_dict_cpu(model), probs, eval_idx)
        if on_epoch is not None:
            on_epoch(chunk, score)  # linear heads are cheap: reported, never pruned
        if chunk - best[1] >= 2:
            stopped = "early_stop"
            break
    return _outcome(rt, folder, best, chunk, stopped, t0, timings)


class LogisticHead:
    """A logistic head on standardised features, fitted by full-batch L-BFGS (L2 penalty,
    label smoothing, class weights ``w``); :meth:`fold_into` writes it, standardisation
    included, into a model's ``nn.Linear`` classifier."""

    def __init__(
        self,
        x_tr: torch.Tensor,
        y_tr: torch.Tensor,
        data: TrainData,
        cfg: TrialConfig,
        w: torch.Tensor | None = None,
    ) -> None:
        self.mu, self.sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
        self.z_tr = self.standardise(x_tr)
        self.multi, self.l2, self.w = data.multi_label, cfg.l2, w
        n_labels = len(data.labels)
        self.target = soft_targets(y_tr, n_labels, cfg.label_smoothing, data.multi_label)
        self.lin = torch.nn.Linear(x_tr.shape[1], n_labels).to(x_tr.device)
        torch.nn.init.zeros_(self.lin.weight)
        torch.nn.init.zeros_(self.lin.bias)
        self.opt = torch.optim.LBFGS(
            self.lin.parameters(),
            lr=1.0,
            max_iter=CHUNK_STEPS,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mu) / self.sd

    def _closure(self) -> torch.Tensor:
        self.opt.zero_grad()
        loss = _loss(self.lin(self.z_tr), self.target, self.multi, self.w)
        loss = loss + 0.5 * self.l2 * self.lin.weight.pow(2).sum()
        loss.backward()
        return loss

    def step(self) -> None:
        """``CHUNK_STEPS`` L-BFGS iterations."""
        self.opt.step(self._closure)

    @torch.no_grad()
    def fold_into(self, head: torch.nn.Linear) -> None:
        head.weight.copy_(self.lin.weight / self.sd)
        head.bias.copy_(self.lin.bias - (self.lin.weight / self.sd) @ self.mu)
