"""Stratified folds of labelled images that keep duplicate groups together.

Shared by the label-issue check (:mod:`autovision.checks.label_issues`) and the
cross-validated ranking of the search (:mod:`autovision.search.cv`): each fold holds about
the same share of every label (``StratifiedGroupKFold``; multi-label: iterstrat's
``MultilabelStratifiedKFold`` over one representative row per group), and an exact copy or
near-duplicate (perceptual hash, content pairs when known) never sits on both sides of a
split, so a copy in the training folds cannot vouch for its twin.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np


def duplicate_groups_of(items: Sequence[Any], pairs: Sequence[Sequence[int]] = ()) -> list:
    """Exact and perceptual-hash duplicate groups of ``items`` (lists of ids), merged with
    content pairs ``[a, b, ...]``."""
    from autovision.data.duplicates import duplicate_groups, merge_groups

    return merge_groups(duplicate_groups(items), [list(p[:2]) for p in pairs])


def group_ids(n: int, ids: Sequence[int], groups: Sequence[Sequence[int]]) -> np.ndarray:
    """One group number per row (``ids[r]`` is row ``r``'s item id): rows in a common
    duplicate group share one."""
    row = {i: r for r, i in enumerate(ids)}
    gid = np.arange(n)
    for g in groups:
        rows = [row[i] for i in g if i in row]
        if len(rows) > 1:
            gid[rows] = min(rows)
    return gid


def fold_assignment(y: np.ndarray, gid: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row: stratified by label (``y``: class indices, or indicator rows for
    multi-label), each group (``gid``) in one fold; ``min(folds, groups)`` folds, at least 2."""
    n_groups = len(np.unique(gid))
    k = max(2, min(folds, n_groups))
    fold = np.zeros(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label with fewer members than folds
        if y.ndim == 1:
            from sklearn.model_selection import StratifiedGroupKFold

            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            for f, (_, test) in enumerate(cv.split(np.zeros(len(y)), y, gid)):
                fold[test] = f
            return fold
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        reps = np.unique(gid)
        y_rep = np.stack([y[gid == g].max(0) for g in reps])
        cv = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        rep_fold = np.zeros(len(reps), dtype=np.int64)
        for f, (_, test) in enumerate(cv.split(np.zeros(len(reps)), y_rep)):
            rep_fold[test] = f
        return rep_fold[np.searchsorted(reps, gid)]


def item_folds(
    items: Sequence[Any],
    y: np.ndarray,
    *,
    folds: int,
    seed: int,
    groups: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """Fold number per item of ``items`` (targets ``y``), duplicate groups (default: exact
    and perceptual-hash groups of ``items``) kept within one fold."""
    if groups is None:
        groups = duplicate_groups_of(items)
    gid = group_ids(len(items), [it.id for it in items], groups)
    return fold_assignment(np.asarray(y), gid, folds, seed)
