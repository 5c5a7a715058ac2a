"""Likely label errors: cleanlab's confident learning on out-of-fold probabilities.

Every labelled train and validation item gets a predicted probability from a logistic head
(scikit-learn, on unit-length embeddings standardised within each fold) that never saw it: ``folds``
stratified folds (``StratifiedGroupKFold``; multi-label: iterstrat's
``MultilabelStratifiedKFold`` over one representative row per group) with each
near-duplicate group (exact copies, perceptual-hash neighbours, and content pairs when
known) inside one fold, so a copy in the training folds cannot vouch for a wrong label.
cleanlab then flags the items whose given label the probabilities contradict
(``cleanlab.filter.find_label_issues``) and scores each item's label quality
(``cleanlab.rank.get_label_quality_scores``: the probability of the given label; low =
likely wrong); the multi-label forms are ``cleanlab.multilabel_classification``'s.

Test items are checked by a head fitted on all of train and validation, and reported
separately (their errors distort the evaluation, and a user decides about them apart). They
join the out-of-fold rows in one cleanlab call, so the per-class thresholds and noise rates
come from the whole labelled set rather than from the (small) test split alone. Unlabelled
and unassigned items are not checked; a test item whose label has no train or validation
image cannot be judged and is skipped.

Entry: ``{"id", "source", "split", "label", "suggested", "score", "suggested_score"}``
(multi-label: ``label`` and ``suggested`` are lists; ``suggested`` = the labels whose
probability is at least 0.5, and ``suggested_score`` = the least confident of those
per-label decisions, ``min(max(p, 1 - p))``), worst (lowest score) first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from autovision.data.dataset import DatasetVersion, Item

FOLDS = 5
PENALTY = 0.03
"""L2 penalty of the logistic head per training image (scikit-learn's ``C`` is then
``1 / (PENALTY * n)``, so the head is as soft on 60 images as on 6,000). Measured on
openclipart (Lite0 224 px, 5% labels flipped, out-of-fold): the ranking by label quality is
best around ``C = 0.003`` at ~1,200 images (this value); firmer heads (C 0.03-0.3) rank the
flips worse."""
FILTER_BY = "both"
"""cleanlab's rule (``prune_by_noise_rate``: cleanlab's default, removes the estimated
number of errors per (given, true) pair, lowest margin first; ``both`` is stricter,
``predicted_neq_given`` looser)."""
MULTI_THRESHOLD = 0.5  # multi-label: a label is suggested at this probability
MAX_ITER = 2000
METHOD = (
    "cleanlab confident learning on {folds}-fold out-of-fold probabilities of a logistic head "
    "on frozen {model} embeddings"
)


def _head(multi: bool, n: int) -> Any:
    """Unit-length rows, standardised, then a logistic head (one per label, multi-label)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    lr = LogisticRegression(C=1.0 / (PENALTY * max(1, n)), max_iter=MAX_ITER)
    return make_pipeline(Normalizer(), StandardScaler(), OneVsRestClassifier(lr) if multi else lr)


def _fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Probabilities [len(x), n] of a head fitted on ``x_fit``/``y_fit`` (single-label: class
    indices; multi-label: indicator rows)."""
    multi = y_fit.ndim == 2
    if len(x) == 0:
        return np.zeros((0, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a label constant in a fold, convergence on tiny data
        if not multi and len(np.unique(y_fit)) < 2:
            out = np.zeros((len(x), n))
            out[:, int(y_fit[0])] = 1.0
            return out
        head = _head(multi, len(x_fit)).fit(x_fit, y_fit)
        p = head.predict_proba(x)
    if multi:
        return p
    out = np.zeros((len(x), n))
    out[:, head.classes_] = p
    return out


def _group_ids(n: int, ids: Sequence[int], groups: Sequence[Sequence[int]]) -> np.ndarray:
    """One group number per row: rows in a common duplicate group share one."""
    row = {i: r for r, i in enumerate(ids)}
    gid = np.arange(n)
    for g in groups:
        rows = [row[i] for i in g if i in row]
        if len(rows) > 1:
            gid[rows] = min(rows)
    return gid


def fold_assignment(y: np.ndarray, gid: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row: stratified by label, each group in one fold."""
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

        reps, first = np.unique(gid, return_index=True)
        y_rep = np.stack([y[gid == g].max(0) for g in reps])
        cv = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        rep_fold = np.zeros(len(reps), dtype=np.int64)
        for f, (_, test) in enumerate(cv.split(np.zeros(len(reps)), y_rep)):
            rep_fold[test] = f
        return rep_fold[np.searchsorted(reps, gid)]


def out_of_fold_probs(
    x: np.ndarray, y: np.ndarray, gid: np.ndarray, n: int, *, folds: int, seed: int
) -> np.ndarray:
    """Each row's probabilities from a head fitted on the other folds."""
    fold = fold_assignment(y, gid, folds, seed)
    probs = np.zeros((len(x), n))
    for f in np.unique(fold):
        test = fold == f
        probs[test] = _fit_predict(x[~test], y[~test], x[test], n)
    return probs


def _cleanlab(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(issue mask, label quality scores) by cleanlab."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if y.ndim == 2:
            from cleanlab.multilabel_classification import filter as mfilter
            from cleanlab.multilabel_classification import rank as mrank

            labels = [np.flatnonzero(row).tolist() for row in y]
            mask = mfilter.find_label_issues(
                labels=labels, pred_probs=probs, filter_by=FILTER_BY, n_jobs=1
            )
            return np.asarray(mask, bool), mrank.get_label_quality_scores(labels, probs)
        from cleanlab.filter import find_label_issues as cl_find
        from cleanlab.rank import get_label_quality_scores

        probs = probs / probs.sum(1, keepdims=True).clip(1e-12)
        mask = cl_find(labels=y, pred_probs=probs, filter_by=FILTER_BY, n_jobs=1)
        return np.asarray(mask, bool), get_label_quality_scores(y, probs)


def _entry(
    it: Item, p: np.ndarray, score: float, classes: list[str], multi: bool
) -> dict[str, Any]:
    base = {"id": it.id, "source": it.source, "split": it.split}
    if multi:
        chosen = [c for c, v in zip(classes, p, strict=True) if v >= MULTI_THRESHOLD]
        if not chosen:
            chosen = [classes[int(p.argmax())]]
        sure = float(np.maximum(p, 1 - p).min())
        return {
            **base,
            "label": list(it.labels),
            "suggested": chosen,
            "score": round(float(score), 6),
            "suggested_score": round(sure, 6),
        }
    given = classes.index(it.labels[0])
    order = np.argsort(-p, kind="stable")
    best = int(order[0]) if int(order[0]) != given else int(order[1])
    return {
        **base,
        "label": it.labels[0],
        "suggested": classes[best],
        "score": round(float(score), 6),
        "suggested_score": round(float(p[best]), 6),
    }


def duplicate_groups_of(items: Sequence[Item], pairs: Sequence[Sequence[int]] = ()) -> list:
    """Exact and perceptual-hash duplicate groups, merged with content pairs ``[a, b, ...]``."""
    from autovision.data.duplicates import duplicate_groups, merge_groups

    return merge_groups(duplicate_groups(items), [list(p[:2]) for p in pairs])


def find_label_issues(
    ds: DatasetVersion,
    items: Sequence[Item],
    emb: np.ndarray,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    groups: Sequence[Sequence[int]] | None = None,
    model: str = "efficientnet_lite0",
) -> dict[str, Any]:
    """Likely label errors of ``ds`` (see the module docstring); ``items[i]`` is row ``i`` of
    ``emb``. ``groups``: near-duplicate groups of ids kept in one fold (default: exact and
    perceptual-hash groups of ``items``)."""
    multi = ds.multi_label
    emb = np.asarray(emb, dtype=np.float32)
    fit_rows = [
        r for r, it in enumerate(items) if it.labels and it.split in ("train", "validation")
    ]
    classes = sorted({lab for r in fit_rows for lab in items[r].labels})
    index = {c: i for i, c in enumerate(classes)}
    test_rows = [
        r
        for r, it in enumerate(items)
        if it.labels and it.split == "test" and all(lab in index for lab in it.labels)
    ]
    result: dict[str, Any] = {
        "method": METHOD.format(folds=folds, model=model),
        "folds": folds,
        "checked": len(fit_rows),
        "checked_test": len(test_rows),
        "multi_label": multi,
        "classes": classes,
        "filter_by": FILTER_BY,
        "penalty": PENALTY,
        "label_issues": [],
        "label_issues_test": [],
    }
    if len(classes) < 2 or len(fit_rows) < 4:
        result["skipped"] = "needs at least 2 labels and 4 labelled train/validation images"
        return result

    def targets(rows: list[int]) -> np.ndarray:
        if multi:
            y = np.zeros((len(rows), len(classes)), np.int64)
            for k, r in enumerate(rows):
                y[k, [index[lab] for lab in items[r].labels]] = 1
            return y
        return np.array([index[items[r].labels[0]] for r in rows], np.int64)

    y_fit, y_test = targets(fit_rows), targets(test_rows)
    x_fit, x_test = emb[fit_rows], emb[test_rows]
    if groups is None:
        groups = duplicate_groups_of([items[r] for r in fit_rows])
    gid = _group_ids(len(fit_rows), [items[r].id for r in fit_rows], groups)
    oof = out_of_fold_probs(x_fit, y_fit, gid, len(classes), folds=folds, seed=seed)
    p_test = _fit_predict(x_fit, y_fit, x_test, len(classes))
    y_all = np.concatenate([y_fit, y_test])
    p_all = np.concatenate([oof, p_test])
    mask, scores = _cleanlab(y_all, p_all)
    rows = [*fit_rows, *test_rows]
    flagged = sorted(np.flatnonzero(mask).tolist(), key=lambda k: (scores[k], items[rows[k]].id))
    for k in flagged:
        entry = _entry(items[rows[k]], p_all[k], scores[k], classes, multi)
        key = "label_issues_test" if k >= len(fit_rows) else "label_issues"
        result[key].append(entry)
    return result
