"""Metrics per value of an image metadata key (``--slice-by KEY``), to show bias.

A slice is flagged when its accuracy is more than ``MAX_GAP`` (5 points) below the
accuracy on the whole split. Images without the key form the slice ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autovision.errors import DatasetError
from autovision.evaluation.metrics import summary_metrics

MAX_GAP = 0.05


def slice_metrics(
    Y: np.ndarray,
    P: np.ndarray,
    metadata: Sequence[Mapping[str, Any]],
    key: str,
    *,
    task: str,
    thresholds: Sequence[float] | None = None,
    max_gap: float = MAX_GAP,
) -> dict[str, Any]:
    """``{"key", "overall", "max_gap", "slices": [...], "flagged": [values]}``.

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
    overall = summary_metrics(Y, P, task, thresholds)
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(None if v is None else str(v), []).append(i)
    slices = []
    for value in sorted(groups, key=lambda v: (v is None, str(v))):
        idx = np.asarray(groups[value])
        m = summary_metrics(Y[idx], P[idx], task, thresholds)
        gap = overall["accuracy"] - m["accuracy"]
        slices.append(
            {
                "value": value,
                **m,
                "accuracy_gap": gap,
                "flagged": round(gap, 9) > max_gap,
            }
        )
    return {
        "key": key,
        "max_gap": max_gap,
        "overall": overall,
        "slices": slices,
        "flagged": [s["value"] for s in slices if s["flagged"]],
    }
