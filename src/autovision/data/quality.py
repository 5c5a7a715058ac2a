"""Per-image quality statistics (computed once at import) and the quality flags.

STUB: replaced by the quality helper. Interface:
- ``analyze(img) -> dict``: JSON-serialisable stats of an RGB PIL image (possibly reduced
  by JPEG draft mode); the importer stores it in ``Item.stats`` together with
  ``{"width": w, "height": h}`` of the original file.
- ``quality_flags(items) -> dict[flag, list[dict]]`` for flags ``small``, ``blurry``,
  ``dark``, ``bright``, ``low_information``, ``odd_aspect_ratio``, ``grayscale``; each
  entry ``{"id": int, "source": str, "value": float}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FLAGS = ("small", "blurry", "dark", "bright", "low_information", "odd_aspect_ratio", "grayscale")


def analyze(img: Any) -> dict[str, float]:
    return {}


def quality_flags(items: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
    return {flag: [] for flag in FLAGS}
