"""The data report of a dataset version.

STUB: replaced by the quality helper. ``dataset_report(ds) -> dict`` with keys:
``dataset``, ``version``, ``images``, ``labels`` ({label: count}), ``splits``
({"train": n, "validation": n, "test": n}), ``multi_label``, ``label_split_counts``
({label: {split: n}}), ``imbalance_ratio`` (largest / smallest label, or null),
``label_warnings`` ([{"label", "count", "level": "error"|"warning", "message"}]),
``issues``: {
  ``exact_duplicates``, ``conflicting_labels``, ``near_duplicates``, ``split_leakage``:
      lists of groups ``{"images": [{"id", "source", "labels", "split"}, ...]}``
      (``split_leakage`` groups also have ``"kind": "exact"|"near"``),
  ``quality``: {flag: [{"id", "source", "value"}]}},
``problems`` (the import problems stored with the version).
"""

from __future__ import annotations

from typing import Any


def dataset_report(ds: Any) -> dict[str, Any]:
    return {
        "dataset": ds.name,
        "version": ds.version,
        "images": len(ds.items),
        "labels": ds.label_counts(),
        "splits": ds.split_counts(),
        "issues": {},
        "problems": list(ds.problems),
    }
