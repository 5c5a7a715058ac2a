"""Fairness by slice: metrics per value of image metadata attributes (``--slice-by a,b``).

For every value of an attribute: support, accuracy and per-label recall and precision, each
with a 95% percentile bootstrap interval (``RESAMPLES`` resamples of the value's images,
seeded). For every metric (``accuracy``, ``recall/LABEL``, ``precision/LABEL``): the largest
gap between two values, flagged when it exceeds ``max_gap`` (default 0.05) and both values
have at least ``min_support`` (default 30) images counting for that metric: images for
accuracy, images of the label for its recall, images predicted as the label for its
precision. Values with fewer images than ``min_support`` are reported with
``insufficient_support`` and take no part in a gap unless fewer than two values have enough
(the gap is then shown, never flagged); they are never merged. Images without the attribute
form the value ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autovision.errors import DatasetError
from autovision.evaluation.bootstrap import CONFIDENCE, RESAMPLES, interval, resampled
from autovision.evaluation.metrics import predictions, summary_metrics

MAX_GAP = 0.05
MIN_SUPPORT = 30


def parse_keys(slice_by: str | Sequence[str] | None) -> list[str]:
    """``"a, b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (no duplicates, order kept)."""
    if not slice_by:
        return []
    parts = slice_by.split(",") if isinstance(slice_by, str) else list(slice_by)
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def slice_attributes(
    Y: np.ndarray,
    P: np.ndarray,
    metadata: Sequence[Mapping[str, Any]],
    keys: str | Sequence[str],
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """``{attribute: slice_metrics(...)}`` for every attribute of ``keys``."""
    return {key: slice_metrics(Y, P, metadata, key, **kwargs) for key in parse_keys(keys)}


def slice_metrics(
    Y: np.ndarray,
    P: np.ndarray,
    metadata: Sequence[Mapping[str, Any]],
    key: str,
    *,
    task: str,
    labels: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
    max_gap: float = MAX_GAP,
    min_support: int = MIN_SUPPORT,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """One attribute: ``{"key", "overall", "values": [...], "gaps": {metric: {...}},
    "flagged": [metrics], "insufficient_support": [values], ...}``.

    ``Y`` is the 0/1 truth [N, L], ``P`` the probabilities [N, L] and ``metadata`` the
    images' metadata dicts in the same order.
    """
    values = [m.get(key) for m in metadata]
    if all(v is None for v in values):
        known = sorted({k for m in metadata for k in m})
        raise DatasetError(
            f"no image of the split has metadata key {key!r} "
            f"(keys present: {', '.join(known) or 'none'})"
        )
    labels = list(labels) if labels is not None else [str(i) for i in range(Y.shape[1])]
    Y = np.asarray(Y, dtype=np.int64)
    Yp = predictions(P, task, thresholds)
    correct = (Yp == Y).all(axis=1)
    overall = summary_metrics(Y, P, task, thresholds)
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(None if v is None else str(v), []).append(i)
    rows, boots = [], {}
    for k, value in enumerate(sorted(groups, key=lambda v: (v is None, str(v)))):
        idx = np.asarray(groups[value])
        rng = np.random.default_rng([seed, k])
        boot = resampled(correct[idx], Y[idx], Yp[idx], rng, resamples)
        boots[value] = boot
        rows.append(_value_row(value, idx, Y, P, Yp, correct, boot, labels, overall, task,
                               thresholds, min_support))  # fmt: skip
    gaps = _gaps(rows, boots, labels, max_gap, min_support)
    flagged = [m for m, g in gaps.items() if g["flagged"]]
    for row in rows:
        row["flagged_metrics"] = [m for m in flagged if gaps[m]["between"][1] == row["value"]]
        row["flagged"] = bool(row["flagged_metrics"])
    return {
        "key": key,
        "max_gap": max_gap,
        "min_support": min_support,
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "seed": seed,
        "overall": overall,
        "values": rows,
        "insufficient_support": [r["value"] for r in rows if r["insufficient_support"]],
        "gaps": gaps,
        "flagged": flagged,
    }


def _value_row(
    value: Any,
    idx: np.ndarray,
    Y: np.ndarray,
    P: np.ndarray,
    Yp: np.ndarray,
    correct: np.ndarray,
    boot: dict[str, np.ndarray],
    labels: list[str],
    overall: dict[str, Any],
    task: str,
    thresholds: Sequence[float] | None,
    min_support: int,
) -> dict[str, Any]:
    y, yp = Y[idx], Yp[idx]
    pos, pred, tp = y.sum(axis=0), yp.sum(axis=0), (y & yp).sum(axis=0)
    rec_ci, prec_ci = interval(boot["recall"]), interval(boot["precision"])
    per_label = {
        lab: {
            "support": int(pos[j]),
            "predicted": int(pred[j]),
            "recall": float(tp[j] / pos[j]) if pos[j] else None,
            "recall_ci": rec_ci[j] if pos[j] else None,
            "precision": float(tp[j] / pred[j]) if pred[j] else None,
            "precision_ci": prec_ci[j] if pred[j] else None,
        }
        for j, lab in enumerate(labels)
    }
    m = summary_metrics(Y[idx], P[idx], task, thresholds)
    return {
        "value": value,
        **m,
        "support": len(idx),
        "insufficient_support": len(idx) < min_support,
        "accuracy": float(correct[idx].mean()),
        "accuracy_ci": interval(boot["accuracy"]),
        "accuracy_gap": overall["accuracy"] - float(correct[idx].mean()),
        "per_label": per_label,
    }


def _metric_points(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, list[tuple]]:
    """``{metric: [(value, figure, support, boot getter), ...]}`` over values where defined."""
    out: dict[str, list[tuple]] = {"accuracy": []}
    for r in rows:
        out["accuracy"].append((r["value"], r["accuracy"], r["images"], ("accuracy", None)))
    for j, lab in enumerate(labels):
        for kind, count in (("recall", "support"), ("precision", "predicted")):
            pts = out.setdefault(f"{kind}/{lab}", [])
            for r in rows:
                entry = r["per_label"][lab]
                if entry[kind] is not None:
                    pts.append((r["value"], entry[kind], entry[count], (kind, j)))
    return out


def _gaps(
    rows: list[dict[str, Any]],
    boots: dict[Any, dict[str, np.ndarray]],
    labels: list[str],
    max_gap: float,
    min_support: int,
) -> dict[str, dict[str, Any]]:
    """The largest gap of every metric defined on at least two values."""
    gaps: dict[str, dict[str, Any]] = {}
    for metric, points in _metric_points(rows, labels).items():
        enough = [p for p in points if p[2] >= min_support]
        compared = enough if len(enough) >= 2 else points
        if len(compared) < 2:
            continue
        hi = max(compared, key=lambda p: p[1])
        lo = min(compared, key=lambda p: p[1])
        gap = float(hi[1] - lo[1])

        def boot(p: tuple) -> np.ndarray:
            kind, j = p[3]
            s = boots[p[0]][kind]
            return s if j is None else s[:, j]

        gaps[metric] = {
            "gap": gap,
            "flagged": len(enough) >= 2 and round(gap, 9) > max_gap,
            "between": [hi[0], lo[0]],
            "figures": [hi[1], lo[1]],
            "support": [hi[2], lo[2]],
            "gap_ci": interval(boot(hi) - boot(lo)),
            "enough_support": len(enough) >= 2,
        }
    return gaps
