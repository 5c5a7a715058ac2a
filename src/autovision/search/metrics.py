"""Validation metrics that rank trials, and the per-label thresholds of multi-label models."""

from __future__ import annotations

import numpy as np

PRIMARY = {"single-label": "accuracy", "multi-label": "f1_micro"}
_GRID = np.round(np.arange(0.05, 0.96, 0.01), 2)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def best_thresholds(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per label, the threshold in 0.05..0.95 that maximises F1 on ``(y, probs)``
    (0.5 for labels without positive examples)."""
    y = y.astype(bool)
    out = np.full(y.shape[1], 0.5, dtype=np.float32)
    for j in range(y.shape[1]):
        if not y[:, j].any():
            continue
        pred = probs[:, j][None, :] >= _GRID[:, None]  # [T, N]
        tp = (pred & y[:, j]).sum(1)
        fp = (pred & ~y[:, j]).sum(1)
        fn = (~pred & y[:, j]).sum(1)
        f1 = _f1(tp, fp, fn)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        out[j] = float(_GRID[best[len(best) // 2]])  # middle of the best plateau
    return out


def single_label_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    n_labels = probs.shape[1]
    pred = probs.argmax(1)
    p = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {
        "accuracy": float((pred == y).mean()),
        "f1_macro": float(
            f1_score(y, pred, labels=list(range(n_labels)), average="macro", zero_division=0)
        ),
        "log_loss": float(-np.log(p).mean()),
    }


def multi_label_metrics(
    y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None = None
) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    th = best_thresholds(y, probs) if thresholds is None else thresholds
    yb = y.astype(bool)
    pred = probs >= th[None, :]
    tp, fp, fn = (pred & yb).sum(0), (pred & ~yb).sum(0), (~pred & yb).sum(0)
    present = yb.any(0)
    ap = [average_precision_score(yb[:, j], probs[:, j]) for j in np.flatnonzero(present)]
    return {
        "f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "f1_macro": float(_f1(tp, fp, fn)[present].mean()) if present.any() else 0.0,
        "mean_average_precision": float(np.mean(ap)) if ap else 0.0,
        "exact_match": float((pred == yb).all(1).mean()),
    }


def evaluate(task: str, y: np.ndarray, probs: np.ndarray) -> tuple[float, dict[str, float]]:
    """``(score that ranks trials, all metrics)``; thresholds for multi-label are chosen on
    the same validation images (see :func:`best_thresholds`)."""
    fn = multi_label_metrics if task == "multi-label" else single_label_metrics
    m = fn(y, probs)
    m["images"] = int(len(y))
    return m[PRIMARY[task]], m
