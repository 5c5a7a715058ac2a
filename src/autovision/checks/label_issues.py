"""Likely label errors: cleanlab's confident learning on out-of-fold probabilities.

Every labelled train and validation item gets a predicted probability from a model that never
saw it: the average of a logistic head (scikit-learn, on unit-length embeddings standardised
within each fold) and a k-nearest-neighbour vote in the same standardised space (see
:func:`knn_probs`). The two are wrong in different places (a linear boundary against local
neighbourhoods), so their average ranks label errors above the model's own mistakes better than
either alone, at the cost of a similarity matrix (a fraction of a second on 1,500 images). ``folds``
stratified folds (:mod:`autovision.data.folds`, shared with the search's cross-validated
ranking) with each near-duplicate group (exact copies, perceptual-hash neighbours, and
content pairs when known) inside one fold, so a copy in the training folds cannot vouch
for a wrong label. cleanlab then flags the items whose given label the probabilities contradict
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
from autovision.data.folds import duplicate_groups_of, fold_assignment
from autovision.data.folds import group_ids as _group_ids

FOLDS = 5
PENALTY = 0.03
"""L2 penalty of the logistic head per training image (scikit-learn's ``C`` is then
``1 / (PENALTY * n)``, so the head is as soft on 60 images as on 6,000). Measured on
openclipart (Lite0 224 px, 5% labels flipped, out-of-fold): the ranking by label quality is
best around ``C = 0.003`` at ~1,200 images (this value); firmer heads (C 0.03-0.3) rank the
flips worse."""
KNN = 20
"""Neighbours of the k-NN vote (fewer on a small training set: ``n - 1`` at most)."""
KNN_TEMPERATURE = 0.05
"""Softmax temperature over the neighbours' cosine similarities: the closest neighbours weigh
most (a plain majority of 20 is too flat to rank with; 0.05 was the best of 0.02-1 on openclipart,
see benchmarks/README.md)."""
KNN_SMOOTHING = 0.02
"""Share of a uniform distribution mixed into the vote, so no class gets probability 0."""
FILTER_BY = "prune_by_noise_rate"
"""cleanlab's rule: its default, which removes the estimated number of errors per (given,
true) pair, lowest margin first (``both`` is stricter and flags ~20% fewer at a lower recall;
``predicted_neq_given`` looser). Measured on openclipart with 5% planted flips, 3 fold seeds,
on the averaged probabilities: recall 0.81-0.86, precision 0.29-0.31 (``both``: 0.77-0.82,
0.33-0.36), against 0.84-0.86 / 0.20-0.22 with the logistic head alone."""
MULTI_THRESHOLD = 0.5  # multi-label: a label is suggested at this probability
MAX_ITER = 2000
METHOD = (
    "cleanlab confident learning on {folds}-fold out-of-fold probabilities (mean of a logistic "
    "head and a {k}-nearest-neighbour vote) on frozen {model} embeddings"
)


def _head(multi: bool, n: int) -> Any:
    """Unit-length rows, standardised, then a logistic head (one per label, multi-label)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    lr = LogisticRegression(C=1.0 / (PENALTY * max(1, n)), max_iter=MAX_ITER)
    return make_pipeline(Normalizer(), StandardScaler(), OneVsRestClassifier(lr) if multi else lr)


def knn_probs(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x: np.ndarray,
    n: int,
    *,
    k: int = KNN,
    temperature: float = KNN_TEMPERATURE,
    block: int = 1024,
) -> np.ndarray:
    """Probabilities [len(x), n] by a similarity-weighted vote of each row's ``k`` nearest rows
    of ``x_fit`` (cosine after the head's own preprocessing: unit length, then standardised on
    ``x_fit``); weights ``softmax(similarity / temperature)``, mixed with
    :data:`KNN_SMOOTHING` of uniform. Single-label: the weighted share of each class among the
    neighbours; multi-label (``y_fit`` indicator rows): each label's weighted share."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    if len(x) == 0:
        return np.zeros((0, n))
    prep = make_pipeline(Normalizer(), StandardScaler()).fit(x_fit)

    def unit(a: np.ndarray) -> np.ndarray:
        a = prep.transform(a)
        return a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)

    ref = unit(x_fit)
    onehot = y_fit.astype(float) if y_fit.ndim == 2 else np.eye(n)[y_fit]
    k = max(1, min(k, len(x_fit) - 1 if len(x_fit) > 1 else 1))
    out = np.zeros((len(x), n))
    for start in range(0, len(x), block):  # bounded memory: block x len(x_fit) similarities
        sim = unit(x[start : start + block]) @ ref.T
        near = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, near, 1)
        w = np.exp((s - s.max(1, keepdims=True)) / temperature)
        w /= w.sum(1, keepdims=True)
        out[start : start + block] = np.einsum("rk,rkc->rc", w, onehot[near])
    base = 0.5 if y_fit.ndim == 2 else 1.0 / n
    return (1 - KNN_SMOOTHING) * out + KNN_SMOOTHING * base


def _fit_predict(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Probabilities [len(x), n] of a model fitted on ``x_fit``/``y_fit`` (single-label: class
    indices; multi-label: indicator rows): the mean of the logistic head's and
    :func:`knn_probs`'s (see the module docstring)."""
    return (_head_probs(x_fit, y_fit, x, n) + knn_probs(x_fit, y_fit, x, n)) / 2


def _head_probs(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Probabilities [len(x), n] of the logistic head alone."""
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
        "method": METHOD.format(folds=folds, model=model, k=KNN),
        "folds": folds,
        "checked": len(fit_rows),
        "checked_test": len(test_rows),
        "multi_label": multi,
        "classes": classes,
        "filter_by": FILTER_BY,
        "penalty": PENALTY,
        "knn": KNN,
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
