"""Folds over labelled images: stratified, duplicate groups within one fold, shared with the
label-issue check."""

from __future__ import annotations

import numpy as np

from autovision.checks import label_issues
from autovision.data import folds
from autovision.data.dataset import Item


def _item(i: int, label: str, sha: str | None = None) -> Item:
    return Item(
        id=i,
        sha256=sha or f"{i:064x}",
        source=f"{label}/{i}.png",
        labels=(label,),
        split="train",
        width=8,
        height=8,
        format="PNG",
    )


def test_folds_are_stratified_and_keep_exact_copies_together() -> None:
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    items = [_item(i, lab) for i, lab in enumerate(labels)]
    copies = [(0, 1, 2), (30, 31), (50, 51, 52)]  # the same bytes under new ids
    for group in copies:
        for i in group:
            items[i] = _item(i, labels[i], sha=f"{group[0]:064x}")
    y = np.array([{"a": 0, "b": 1, "c": 2}[lab] for lab in labels])
    for seed in range(4):
        fold = folds.item_folds(items, y, folds=5, seed=seed)
        assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
        for group in copies:
            assert len(set(fold[list(group)].tolist())) == 1
        for f in range(5):
            per_label = np.bincount(y[fold == f], minlength=3)
            assert np.all(np.abs(per_label - [6, 4, 2]) <= 2), per_label


def test_the_label_issue_check_uses_the_same_folds() -> None:
    assert label_issues.fold_assignment is folds.fold_assignment
    assert label_issues.duplicate_groups_of is folds.duplicate_groups_of
    gid = folds.group_ids(4, [10, 11, 12, 13], [[11, 13], [10, 99]])
    assert gid.tolist() == [0, 1, 2, 1]
