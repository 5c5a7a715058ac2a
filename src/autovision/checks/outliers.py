"""Outliers: images that belong to none of the classes, by nearest-neighbour distance in the
embedding space. (Stub: the contract of ISSUE14.md; implemented by the outliers slice.)"""

from __future__ import annotations

from typing import Any

import numpy as np


def find_outliers(emb: np.ndarray, ids: list[int], **kw: Any) -> dict[str, Any]:
    """See ISSUE14.md: ``{"method", "k", "threshold", "checked", "scores": {id: score},
    "outliers": [{"id", "score"}, ...] worst first}``."""
    raise NotImplementedError
