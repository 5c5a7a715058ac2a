"""Leaving flagged images out of one training run, without making a dataset version.

``train --exclude-issues label_issues,exact_duplicates`` trains on a view of the stored
version: the same name and version, with the flagged train and validation images removed.
The test split is never changed (cleaning it would flatter the evaluation), so
``autovision evaluate`` measures the model on the stored test split as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from autovision.data.dataset import DatasetVersion

TRAINING_SPLITS = ("train", "validation")


def excluded_for_training(
    ws: Any, ds: DatasetVersion, issues: str | Iterable[str]
) -> dict[str, Any]:
    """What ``issues`` leave out of training ``ds``: ``{"issues", "images", "ids",
    "by_issue"}``. Only labeled train and validation images count (test, unassigned and
    unlabeled images are never trained on); a model-based issue never computed for ``ds``
    raises the same :class:`DatasetError` as ``dataset exclude``."""
    from autovision.data import edit

    names = edit.parse_issues(issues)
    checks = edit.required_checks(ws, ds, names)
    by_issue = edit.issue_exclusions_by_issue(edit.report_with_checks(ds, checks), names)
    trained = {it.id for it in ds.items if it.split in TRAINING_SPLITS and it.labels}
    kept = {name: sorted(ids & trained) for name, ids in by_issue.items()}
    ids = sorted(set().union(*map(set, kept.values())))
    return {
        "issues": names,
        "images": len(ids),
        "ids": ids,
        "by_issue": {name: len(v) for name, v in kept.items()},
    }


def training_view(ds: DatasetVersion, ids: Iterable[int]) -> DatasetVersion:
    """``ds`` without the train/validation items ``ids`` (same name and version)."""
    drop = set(ids)
    items = tuple(it for it in ds.items if not (it.id in drop and it.split in TRAINING_SPLITS))
    return replace(ds, items=items)


def describe(excluded: dict[str, Any]) -> str:
    """``left out 15 images (label_issues 12, exact_duplicates 3) from training and
    validation``."""
    parts = ", ".join(f"{k} {n}" for k, n in excluded.get("by_issue", {}).items())
    n = excluded.get("images", 0)
    noun = "image" if n == 1 else "images"
    return f"left out {n} {noun} ({parts}) from training and validation"
