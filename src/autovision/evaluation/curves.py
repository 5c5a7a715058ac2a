"""Precision-recall curves as points (for SVG charts), with the report's definitions:
one-vs-rest per label on the label's score, and the micro average over all (image, label)
pairs, as :func:`autovision.evaluation._plots.pr_plot` draws them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_POINTS = 120  # per curve: enough for a chart, small enough to embed
MAX_CURVES = 10  # per-label curves kept (largest labels first), as the report draws


def _thin(recall: np.ndarray, precision: np.ndarray, n: int) -> list[list[float]]:
    """At most ``n`` points of a curve, keeping both ends."""
    pts = np.stack([recall, precision], axis=1)[::-1]  # by increasing recall
    if len(pts) > n:
        keep = np.unique(np.linspace(0, len(pts) - 1, n).round().astype(int))
        pts = pts[keep]
    return [[round(float(r), 4), round(float(p), 4)] for r, p in pts]


def pr_curves(
    Y: np.ndarray, P: np.ndarray, labels: Sequence[str], max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """``{"per_label": [{"label", "ap", "points": [[recall, precision], ...]}], "micro":
    {...} | None}``; a label without positives in the split has no curve."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    pos = Y.sum(axis=0)
    order = sorted((j for j in range(len(labels)) if pos[j] > 0), key=lambda j: -pos[j])
    per_label = []
    for j in order[:MAX_CURVES]:
        prec, rec, _ = precision_recall_curve(Y[:, j], P[:, j])
        ap = float(average_precision_score(Y[:, j], P[:, j]))
        per_label.append({"label": labels[j], "ap": ap, "points": _thin(rec, prec, max_points)})
    micro = None
    if Y.any():
        prec, rec, _ = precision_recall_curve(Y.ravel(), P.ravel())
        ap = float(average_precision_score(Y.ravel(), P.ravel()))
        micro = {"label": "micro average", "ap": ap, "points": _thin(rec, prec, max_points)}
    return {"per_label": per_label, "micro": micro}
