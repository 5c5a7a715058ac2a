"""Near duplicates by content: cosine similarity of embeddings (crops, flips, colour
changes). (Stub: the contract of ISSUE14.md; implemented by the near-duplicates slice.)"""

from __future__ import annotations

from typing import Any

import numpy as np


def content_pairs(
    emb: np.ndarray, ids: list[int], *, emb_flipped: np.ndarray | None = None, **kw: Any
) -> dict[str, Any]:
    """See ISSUE14.md: ``{"method", "threshold", "checked", "pairs": [[a, b, sim], ...]}``."""
    raise NotImplementedError
