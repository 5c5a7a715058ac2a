"""Exact and near-duplicate detection.

STUB: replaced by the quality helper. Interface:
- ``perceptual_hash(img) -> str``: hex perceptual hash of an RGB PIL image, stored in
  ``Item.phash`` at import; resized or recompressed copies hash within a small Hamming distance.
- ``exact_duplicate_groups(items) -> list[list[int]]``: groups (item ids) with identical sha256.
- ``near_duplicate_groups(items) -> list[list[int]]``: groups of visually near-identical images.
- ``duplicate_groups(items) -> list[list[int]]``: exact and near groups merged (connected
  components); the splitter keeps each group inside one split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any


def perceptual_hash(img: Any) -> str:
    return ""


def exact_duplicate_groups(items: Sequence[Any]) -> list[list[int]]:
    by_sha: dict[str, list[int]] = defaultdict(list)
    for it in items:
        by_sha[it.sha256].append(it.id)
    return [ids for ids in by_sha.values() if len(ids) > 1]


def near_duplicate_groups(items: Sequence[Any]) -> list[list[int]]:
    return []


def duplicate_groups(items: Sequence[Any]) -> list[list[int]]:
    return exact_duplicate_groups(items)
