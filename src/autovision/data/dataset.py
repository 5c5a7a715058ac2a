"""Immutable views of a dataset version: its items, labels and splits."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Item:
    """One image of a dataset version. ``id`` is stable across versions of a dataset."""

    id: int
    sha256: str
    source: str
    labels: tuple[str, ...]
    split: str
    width: int
    height: int
    format: str
    phash: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        """The single label (``None`` when unlabeled)."""
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "sha256": self.sha256,
            "labels": list(self.labels),
            "split": self.split,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class DatasetVersion:
    """A frozen snapshot; changes make a new version through the workspace."""

    name: str
    version: int
    multi_label: bool
    items: tuple[Item, ...]
    created_at: datetime | None = None
    source: str = ""
    note: str = ""
    parent_version: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    problems: tuple[dict[str, Any], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def labels(self) -> list[str]:
        """Sorted label names present in the version."""
        return sorted({lab for it in self.items for lab in it.labels})

    @property
    def labeled_items(self) -> list[Item]:
        return [it for it in self.items if it.labels]

    def split(self, name: str) -> list[Item]:
        """Labeled items of one split (``train``, ``validation`` or ``test``)."""
        return [it for it in self.items if it.split == name and it.labels]

    def label_counts(self, items: Iterable[Item] | None = None) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for it in self.items if items is None else items:
            counts.update(it.labels)
        return {lab: counts[lab] for lab in sorted(counts)}

    def split_counts(self) -> dict[str, int]:
        counts = Counter(it.split for it in self.items)
        return {s: counts.get(s, 0) for s in (*SPLITS, "unassigned") if s in counts or s in SPLITS}

    def by_id(self) -> dict[int, Item]:
        return {it.id: it for it in self.items}

    @property
    def content_hash(self) -> str:
        return content_hash(self.items)


def content_hash(items: Sequence[Item]) -> str:
    """A hash of what a model learns from: image bytes, labels and splits."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.id):
        h.update(json.dumps([it.id, it.sha256, list(it.labels), it.split]).encode())
    return h.hexdigest()


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``NAME`` -> (NAME, None) meaning latest; ``NAME@N`` -> (NAME, N)."""
    from autovision.errors import DatasetError

    name, sep, ver = ref.partition("@")
    if not name:
        raise DatasetError(f"invalid dataset reference {ref!r}: expected NAME or NAME@VERSION")
    if not sep:
        return name, None
    if not ver.isdigit():
        raise DatasetError(f"invalid dataset version in {ref!r}: expected NAME@N with N >= 1")
    return name, int(ver)
