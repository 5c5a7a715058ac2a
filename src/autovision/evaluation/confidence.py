"""Confidence thresholds and calibration: how far a model's scores can be trusted.

Definitions are those of :mod:`autovision.evaluation.metrics` (``confidence_thresholds`` and
``calibration``), computed with scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLDS: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(20)), 0.96, 0.97, 0.98, 0.99)
CALIBRATION_BINS = 10


def threshold_table(
    Y: np.ndarray, P: np.ndarray, task: str, thresholds: Sequence[float] = THRESHOLDS
) -> list[dict[str, Any]]:
    """Precision, recall, F1, false positive rate and coverage at each confidence threshold."""
    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support

    if task == "single-label":
        top = np.eye(P.shape[1], dtype=np.int64)[P.argmax(axis=1)]
        conf = P.max(axis=1)
    rows = []
    for t in thresholds:
        if task == "single-label":
            Yt = top * (conf >= t)[:, None]
        else:
            Yt = np.greater_equal(P, t).astype(np.int64)
        p, r, f, _ = precision_recall_fscore_support(Y, Yt, average="micro", zero_division=np.nan)
        mcm = multilabel_confusion_matrix(Y, Yt)
        fp, tn = int(mcm[:, 0, 1].sum()), int(mcm[:, 0, 0].sum())
        rows.append(
            {
                "threshold": float(t),
                "precision": _num(p),
                "recall": _num(r),
                "f1": _num(f),
                "false_positive_rate": fp / (fp + tn) if fp + tn else None,
                "coverage": float(Yt.any(axis=1).mean()),
            }
        )
    return rows


def calibration(
    confidence: np.ndarray, outcome: np.ndarray, *, n_bins: int = CALIBRATION_BINS, kind: str = ""
) -> dict[str, Any]:
    """Expected calibration error and reliability bins (scikit-learn's uniform binning)."""
    from sklearn.calibration import calibration_curve

    confidence = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    outcome = np.asarray(outcome, dtype=int)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    binids = np.searchsorted(edges[1:-1], confidence)  # the same bins as calibration_curve
    counts = np.bincount(binids, minlength=n_bins)
    acc, conf = calibration_curve(outcome, confidence, n_bins=n_bins, strategy="uniform")
    bins, ece, mce, filled = [], 0.0, 0.0, iter(zip(acc, conf, strict=True))
    for b in range(n_bins):
        entry = {
            "lower": round(float(edges[b]), 6),
            "upper": round(float(edges[b + 1]), 6),
            "count": int(counts[b]),
        }
        if counts[b]:
            a, c = next(filled)
            gap = abs(float(a) - float(c))
            ece += counts[b] / len(confidence) * gap
            mce = max(mce, gap)
            entry |= {"accuracy": float(a), "confidence": float(c), "gap": gap}
        else:
            entry |= {"accuracy": None, "confidence": None, "gap": None}
        bins.append(entry)
    return {"kind": kind, "n_bins": n_bins, "ece": float(ece), "mce": float(mce), "bins": bins}


def _num(x: Any) -> float | None:
    """A finite float, or ``None`` for NaN/inf (strict JSON)."""
    x = float(x)
    return x if math.isfinite(x) else None


def metrics_at(Y: np.ndarray, P: np.ndarray, task: str, threshold: float) -> dict[str, Any]:
    """Precision, recall and F1 per label and micro-averaged at one confidence threshold,
    with the definitions of :func:`threshold_table` (single-label: the top label counts
    when its score is ``>= threshold``, else the model abstains; multi-label: each label
    score on its own). Undefined values are ``None``. The console's slider computes the
    same in JavaScript; this is its reference."""
    if task == "single-label":
        Yt = np.zeros(P.shape, dtype=np.int64)
        if len(P):
            top = P.argmax(axis=1)
            keep = P[np.arange(len(P)), top] >= threshold
            Yt[np.flatnonzero(keep), top[keep]] = 1
    else:
        Yt = np.greater_equal(P, threshold).astype(np.int64)
    tp = (Yt & Y).sum(axis=0)
    fp = (Yt & (1 - Y)).sum(axis=0)
    fn = ((1 - Yt) & Y).sum(axis=0)

    def prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
        return {
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        }

    micro = prf(int(tp.sum()), int(fp.sum()), int(fn.sum()))
    micro["coverage"] = float(Yt.any(axis=1).mean()) if len(Yt) else None
    return {
        "threshold": float(threshold),
        "micro": micro,
        "per_label": [prf(int(a), int(b), int(c)) for a, b, c in zip(tp, fp, fn, strict=True)],
    }
