"""Percentile bootstrap confidence intervals of a slice's counts, vectorised with numpy.

One resample draws the slice's images with replacement (multinomial weights), so every
metric of it (accuracy, per-label recall and precision) comes from the same resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
_CELLS = 4_000_000  # resamples x images weighed at once


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def resampled(
    correct: np.ndarray, Y: np.ndarray, Yp: np.ndarray, rng: np.random.Generator, resamples: int
) -> dict[str, np.ndarray]:
    """``accuracy`` [B] and ``recall`` / ``precision`` [B, L] of ``resamples`` bootstraps
    (NaN where a resample has no positive or no prediction of a label)."""
    n = len(correct)
    tp_rows = (Y & Yp).astype(np.float64)
    out: dict[str, list[np.ndarray]] = {"accuracy": [], "recall": [], "precision": []}
    step = max(1, _CELLS // max(n, 1))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)  # [b, n]
        out["accuracy"].append(w @ correct.astype(np.float64) / n)
        tp, pos, pred = w @ tp_rows, w @ Y.astype(np.float64), w @ Yp.astype(np.float64)
        out["recall"].append(_ratio(tp, pos))
        out["precision"].append(_ratio(tp, pred))
    return {k: np.concatenate(v) for k, v in out.items()}


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> Any:
    """``[low, high]`` percentiles over axis 0 ignoring NaN (``None`` where all are NaN)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 1:
        return interval(samples[:, None], confidence)[0]
    alpha = (1.0 - confidence) / 2
    ok = ~np.isnan(samples).all(axis=0)
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    if ok.any():
        lo[ok] = np.nanquantile(samples[:, ok], alpha, axis=0)
        hi[ok] = np.nanquantile(samples[:, ok], 1 - alpha, axis=0)
    return [None if not o else [float(a), float(b)] for o, a, b in zip(ok, lo, hi, strict=True)]
