"""Outliers: images that belong to none of the classes, by nearest-neighbour distance in the
embedding space.

``find_outliers(emb, ids, *, fit_mask=None, k=OUTLIER_K)`` scores every image by the mean
cosine distance to its ``k`` nearest neighbours among the reference rows (``fit_mask``, by
default all rows; an image in the reference never counts itself). This is the score of
cleanlab's ``OutOfDistribution(features=...)`` (mean k-NN distance, Kuan & Mueller 2022)
without its ``exp(-t * d)`` squashing, which changes no ranking; **higher = more
outlying**, and every list is worst first. The k-NN search is blockwise matrix products, so
50,000 images need no N x N matrix; :mod:`autovision.monitoring.drift` scores the prediction
log with the same functions.

Neighbours at (almost) zero distance are skipped: an exact copy of a screenshot would
otherwise make the screenshot look typical. The threshold is Tukey's fence on the scores of
the reference, ``Q3 + 1.5 * IQR``: no share of the images is flagged by construction, and it
needs no labels. Measured on openclipart (1,542 clip-art images, efficientnet_lite0): it
flags none of the clip art and 13 of 20 photos (skimage/sklearn sample images) added one at
a time; with 16 photos planted (1%), 15 rank in the top 2%.

Returns ``{"method", "k", "threshold", "checked", "outliers": [{"id", "score"}, ...],
"ranking": [{"id", "score"}, ...]}``: ``outliers`` are the images over the threshold,
``ranking`` the worst ``max(20, 10%)`` of all (what a person reviews first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OUTLIER_K = 10
"""Neighbours whose mean cosine distance scores an image (cleanlab's default k)."""
FENCE_IQR = 1.5
"""The threshold is ``Q3 + FENCE_IQR * IQR`` of the reference scores (Tukey's fence)."""
SAME_IMAGE_DISTANCE = 1e-4
"""Neighbours closer than this (cosine distance) are copies of the image and are skipped."""
RANKING_MIN, RANKING_SHARE = 20, 0.10
_BLOCK_FLOATS = 1 << 24  # distances held at once (64 MiB of float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32; all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distances(
    reference: np.ndarray,
    points: np.ndarray | None = None,
    *,
    k: int = OUTLIER_K,
    self_rows: np.ndarray | None = None,
    skip_below: float = 0.0,
) -> np.ndarray:
    """Mean cosine distance of each of ``points`` (default: ``reference``, leave-one-out) to
    its ``k`` nearest ``reference`` rows, blockwise.

    ``self_rows[i]`` is the reference row that point ``i`` is (excluded from its own
    neighbours), or -1; with ``points=None`` every row is its own. Neighbours closer than
    ``skip_below`` are skipped too (copies).
    """
    ref = unit_rows(reference)
    pts = ref if points is None else unit_rows(points)
    if self_rows is None and points is None:
        self_rows = np.arange(len(ref))
    n_ref = len(ref)
    if n_ref == 0 or len(pts) == 0:
        return np.full(len(pts), np.nan)
    k = max(1, min(k, n_ref - (1 if self_rows is not None else 0)))
    out = np.empty(len(pts), dtype=np.float64)
    step = max(1, _BLOCK_FLOATS // n_ref)
    for start in range(0, len(pts), step):
        stop = min(len(pts), start + step)
        dist = 1.0 - pts[start:stop] @ ref.T
        if self_rows is not None:
            rows = np.arange(stop - start)
            own = self_rows[start:stop]
            has = own >= 0
            dist[rows[has], own[has]] = np.inf
        if skip_below > 0:
            dist[dist < skip_below] = np.inf
        near = np.partition(dist, k - 1, axis=1)[:, :k] if k < n_ref else dist
        finite = np.isfinite(near)
        total = np.where(finite, near, 0.0).sum(axis=1)
        count = finite.sum(axis=1)
        out[start:stop] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def fence(scores: np.ndarray, iqr_factor: float = FENCE_IQR) -> float:
    """Tukey's fence ``Q3 + iqr_factor * IQR`` of the finite scores."""
    s = scores[np.isfinite(scores)]
    if len(s) == 0:
        return float("inf")
    q1, q3 = np.quantile(s, [0.25, 0.75])
    return float(q3 + iqr_factor * (q3 - q1))


def find_outliers(
    emb: np.ndarray,
    ids: Sequence[int],
    *,
    fit_mask: np.ndarray | None = None,
    k: int = OUTLIER_K,
) -> dict[str, Any]:
    """Images far from their nearest neighbours: see the module docstring for the result.

    ``fit_mask`` picks the reference rows (e.g. the labelled training data); the others are
    scored against it, and the threshold comes from the reference's own scores.
    """
    emb = np.asarray(emb)
    n = len(ids)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"emb has shape {emb.shape}, expected ({n}, D) for {n} ids")
    mask = np.ones(n, dtype=bool) if fit_mask is None else np.asarray(fit_mask, dtype=bool)
    ref_rows = np.flatnonzero(mask)
    method = (
        f"mean cosine distance to the {k} nearest neighbours in the embedding space "
        f"(cleanlab OutOfDistribution's score); threshold Q3 + {FENCE_IQR:g} IQR"
    )
    if len(ref_rows) < 2:
        return {"method": method, "k": k, "threshold": None, "checked": 0,
                "outliers": [], "ranking": []}  # fmt: skip
    self_rows = np.full(n, -1)
    self_rows[ref_rows] = np.arange(len(ref_rows))
    scores = knn_distances(
        emb[ref_rows], emb, k=k, self_rows=self_rows, skip_below=SAME_IMAGE_DISTANCE
    )
    threshold = fence(scores[ref_rows])
    order = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])]

    def entry(i: int) -> dict[str, Any]:
        return {"id": int(ids[i]), "score": round(float(scores[i]), 6)}

    n_rank = min(len(order), max(RANKING_MIN, int(np.ceil(RANKING_SHARE * n))))
    return {
        "method": method,
        "k": int(min(k, len(ref_rows) - 1)),
        "threshold": round(threshold, 6),
        "checked": n,
        "outliers": [entry(i) for i in order if scores[i] > threshold],
        "ranking": [entry(i) for i in order[:n_rank]],
    }
