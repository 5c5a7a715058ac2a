"""Metrics of a classifier on a labelled split, computed with scikit-learn's metrics.

Inputs are the true labels of each image and the model's probabilities ``P`` [N, L] in the
model's label order. Everything returned is plain JSON (floats, ints, lists, ``None``).

Definitions (chosen to match what cloud AutoML Vision / Vertex AI report):

- Prediction. Single-label: the top label (argmax). Multi-label: every label whose score is
  ``>=`` the model's threshold for that label (0.5 when the model has none).
- ``macro`` / ``micro`` / ``weighted`` precision, recall, F1: scikit-learn's averages over the
  labels that occur in the split (true or predicted), ``zero_division=0``. ``per_label``
  holds every label of the model; a value that is undefined there (precision of a label
  never predicted, recall of a label absent from the split) is ``null``.
- ``top_k_accuracy``: k = ``min(3, number of labels)``; with 3 labels or fewer it is 1.0.
- ``log_loss``: single-label, multi-class cross-entropy (rows renormalised in float64);
  multi-label, mean binary cross-entropy over all (image, label) pairs.
- ``roc_auc`` / ``average_precision``: one-vs-rest per label; ``macro`` averages the labels
  where the score is defined, ``micro`` pools all (image, label) pairs. ROC AUC needs
  positives and negatives of a label, AP needs positives: otherwise ``null`` and a note.
- ``confidence_thresholds``: at each threshold t, a prediction counts only when its
  confidence is ``>= t`` (single-label: the top label's score, else the model abstains on
  that image; multi-label: each label score on its own). Over all (image, label) pairs:
  ``precision`` = TP / (TP + FP) (``null`` when nothing is predicted), ``recall`` =
  TP / (TP + FN), ``f1`` their harmonic mean, ``false_positive_rate`` = FP / (FP + TN),
  ``coverage`` = share of images with at least one prediction.
- ``calibration``: 10 equal-width bins (lower, upper] as in scikit-learn's ``calibration_curve``.
  Single-label: top confidence against correctness; multi-label: every label score against
  its truth. ``ece`` = sum over bins of (bin count / total) * |accuracy - confidence|;
  ``mce`` the largest such gap.
- ``most_confused``: off-diagonal cells of the confusion matrix (multi-label: a true label
  missed while a wrong label was predicted), largest first, with example image ids ordered
  by the wrong label's confidence.
- ``worst_errors``: wrong images, most confident mistake first (single-label: the wrong top
  label's score; multi-label: the largest |truth - score| among wrongly decided labels).
- Multi-label ``confusion_matrix``: the diagonal holds each label's true positives; cell
  (i, j) counts images where true label i was missed while label j was wrongly predicted
  (the pairs of ``most_confused``). ``per_label_confusion`` gives scikit-learn's
  TP/FP/FN/TN per label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autovision.evaluation.confidence import _num, calibration, threshold_table

TOP_PAIRS = 10
EXAMPLES_PER_PAIR = 5
WORST_ERRORS = 12
TASKS = ("single-label", "multi-label")


def compute_metrics(
    true_labels: Sequence[Sequence[str]],
    probs: Any,
    labels: Sequence[str],
    *,
    task: str = "single-label",
    thresholds: Sequence[float] | None = None,
    ids: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Every metric of the split as one JSON-ready dict (see the module docstring)."""
    Y, P = indicator(true_labels, labels), as_probs(probs, len(labels))
    ids = list(ids) if ids is not None else list(range(len(Y)))
    if task == "single-label":
        return _single_label(Y, P, list(labels), ids)
    if task == "multi-label":
        return _multi_label(Y, P, list(labels), ids, model_thresholds(thresholds, len(labels)))
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def indicator(true_labels: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """0/1 matrix [N, L] of the true labels in ``labels`` order."""
    from sklearn.preprocessing import MultiLabelBinarizer

    known = set(labels)
    for row in true_labels:
        unknown = [lab for lab in row if lab not in known]
        if unknown:
            raise ValueError(f"labels {unknown} are not among the model's labels {list(labels)}")
    mlb = MultiLabelBinarizer(classes=list(labels))
    return mlb.fit_transform([list(r) for r in true_labels]).astype(np.int64)


def as_probs(probs: Any, n_labels: int) -> np.ndarray:
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != n_labels:
        raise ValueError(f"probabilities must have shape [N, {n_labels}], got {P.shape}")
    return np.clip(P, 0.0, 1.0)


def model_thresholds(thresholds: Sequence[float] | None, n_labels: int) -> np.ndarray:
    return np.asarray(thresholds if thresholds is not None else [0.5] * n_labels, dtype=float)


def predictions(P: np.ndarray, task: str, thresholds: Sequence[float] | None = None) -> np.ndarray:
    """0/1 matrix [N, L] of the predicted labels (argmax, or score >= threshold)."""
    if task == "single-label":
        out = np.zeros(P.shape, dtype=np.int64)
        out[np.arange(len(P)), P.argmax(axis=1)] = 1
        return out
    return np.greater_equal(P, model_thresholds(thresholds, P.shape[1])[None, :]).astype(np.int64)


def summary_metrics(
    Y: np.ndarray, P: np.ndarray, task: str, thresholds: Sequence[float] | None = None
) -> dict[str, Any]:
    """The headline numbers (for slices): accuracy and averaged P/R/F1."""
    from sklearn.metrics import accuracy_score, hamming_loss

    Yp = predictions(P, task, thresholds)
    if task == "single-label":
        y, pred = Y.argmax(axis=1), Yp.argmax(axis=1)
        out = {"images": len(Y), "accuracy": float(accuracy_score(y, pred))}
        out |= _averages(y, pred)
    else:
        out = {"images": len(Y), "accuracy": float(accuracy_score(Y, Yp))}
        out |= _averages(Y, Yp)
        out["hamming_loss"] = float(hamming_loss(Y, Yp))
    return out


# ---- single-label ---------------------------------------------------------------------


def _single_label(Y: np.ndarray, P: np.ndarray, labels: list[str], ids: list[Any]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, top_k_accuracy_score

    if (Y.sum(axis=1) != 1).any():
        raise ValueError("single-label metrics need exactly one true label per image")
    n, n_labels = Y.shape
    y, pred = Y.argmax(axis=1), P.argmax(axis=1)
    Yp = predictions(P, "single-label")
    notes: list[str] = []
    k = min(3, n_labels)
    # with k >= L every label is in the top k: scikit-learn warns and returns 1.0
    top_k = 1.0 if k >= n_labels else top_k_accuracy_score(y, P, k=k, labels=np.arange(n_labels))
    cm = confusion_matrix(y, pred, labels=np.arange(n_labels))
    out: dict[str, Any] = {
        "task": "single-label",
        "labels": labels,
        "images": n,
        "accuracy": float(accuracy_score(y, pred)),
        "top_k": k,
        "top_k_accuracy": float(top_k),
        "log_loss": float(log_loss(y, P / _row_sums(P), labels=np.arange(n_labels))),
        **_averages(y, pred),
        "per_label": _per_label(Y, Yp, labels),
        "confusion_matrix": {"labels": labels, "matrix": cm.tolist()},
    }
    out |= _ranking(Y, P, labels, notes)
    for lab, entry in out["per_label"].items():
        entry["roc_auc"] = out["roc_auc"]["per_label"][lab]
        entry["average_precision"] = out["average_precision"]["per_label"][lab]
    out["confidence_thresholds"] = threshold_table(Y, P, "single-label")
    conf = P.max(axis=1)
    out["calibration"] = calibration(conf, (y == pred).astype(int), kind="top confidence")
    wrong_conf = P[np.arange(n), pred]
    out["most_confused"] = _confused_pairs(
        [
            (int(y[i]), int(pred[i]), float(wrong_conf[i]), ids[i])
            for i in range(n)
            if y[i] != pred[i]
        ],
        labels,
    )
    errors = [i for i in np.argsort(-wrong_conf, kind="stable") if y[i] != pred[i]]
    out["worst_errors"] = [
        {
            "id": ids[i],
            "true_labels": [labels[y[i]]],
            "predicted_labels": [labels[pred[i]]],
            "confidence": float(wrong_conf[i]),
            "true_label_probability": float(P[i, y[i]]),
        }
        for i in errors[:WORST_ERRORS]
    ]
    out["notes"] = notes + _absent_notes(Y, labels)
    return _clean(out)


# ---- multi-label ----------------------------------------------------------------------


def _multi_label(
    Y: np.ndarray, P: np.ndarray, labels: list[str], ids: list[Any], th: np.ndarray
) -> dict:
    from sklearn.metrics import accuracy_score, hamming_loss, log_loss, multilabel_confusion_matrix

    n = len(Y)
    Yp = predictions(P, "multi-label", th)
    notes: list[str] = []
    subset = float(accuracy_score(Y, Yp))
    mcm = multilabel_confusion_matrix(Y, Yp)
    out: dict[str, Any] = {
        "task": "multi-label",
        "labels": labels,
        "images": n,
        "thresholds": {lab: float(t) for lab, t in zip(labels, th, strict=True)},
        "accuracy": subset,
        "subset_accuracy": subset,
        "hamming_loss": float(hamming_loss(Y, Yp)),
        "top_k": None,
        "top_k_accuracy": None,
        "log_loss": float(log_loss(Y.ravel(), P.ravel(), labels=[0, 1])),
        **_averages(Y, Yp),
        "per_label": _per_label(Y, Yp, labels),
        "confusion_matrix": None,  # filled below with the confused pairs
        "per_label_confusion": {
            lab: {
                "tp": int(m[1, 1]),
                "fp": int(m[0, 1]),
                "fn": int(m[1, 0]),
                "tn": int(m[0, 0]),
            }
            for lab, m in zip(labels, mcm, strict=True)
        },
    }
    out |= _ranking(Y, P, labels, notes)
    for j, lab in enumerate(labels):
        entry = out["per_label"][lab]
        entry["threshold"] = float(th[j])
        entry["roc_auc"] = out["roc_auc"]["per_label"][lab]
        entry["average_precision"] = out["average_precision"]["per_label"][lab]
    out["confidence_thresholds"] = threshold_table(Y, P, "multi-label")
    out["calibration"] = calibration(P.ravel(), Y.ravel(), kind="every label score")
    pairs = []
    for i in range(n):
        missed = np.flatnonzero((Y[i] == 1) & (Yp[i] == 0))
        extra = np.flatnonzero((Y[i] == 0) & (Yp[i] == 1))
        pairs += [(int(t), int(p), float(P[i, p]), ids[i]) for t in missed for p in extra]
    confused = np.diag(mcm[:, 1, 1]).astype(np.int64)
    for t, p, _, _ in pairs:
        confused[t, p] += 1
    out["confusion_matrix"] = {"labels": labels, "matrix": confused.tolist()}
    out["most_confused"] = _confused_pairs(pairs, labels)
    err = np.where(Yp != Y, np.abs(Y - P), 0.0).max(axis=1)
    worst = [i for i in np.argsort(-err, kind="stable") if err[i] > 0][:WORST_ERRORS]
    out["worst_errors"] = [
        {
            "id": ids[i],
            "true_labels": [labels[j] for j in np.flatnonzero(Y[i])],
            "predicted_labels": [labels[j] for j in np.flatnonzero(Yp[i])],
            "confidence": float(err[i]),
        }
        for i in worst
    ]
    out["notes"] = notes + _absent_notes(Y, labels)
    return _clean(out)


# ---- shared pieces --------------------------------------------------------------------


def _averages(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support

    out = {}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0.0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    return out


def _per_label(Y: np.ndarray, Yp: np.ndarray, labels: list[str]) -> dict[str, dict[str, Any]]:
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, s = precision_recall_fscore_support(Y, Yp, average=None, zero_division=np.nan)
    predicted = Yp.sum(axis=0)
    return {
        lab: {
            "precision": _num(p[j]),
            "recall": _num(r[j]),
            "f1": None if s[j] == 0 and predicted[j] == 0 else _num(f[j]),
            "support": int(s[j]),
            "predicted": int(predicted[j]),
        }
        for j, lab in enumerate(labels)
    }


def _ranking(Y: np.ndarray, P: np.ndarray, labels: list[str], notes: list[str]) -> dict:
    """One-vs-rest ROC AUC and average precision: macro, micro and per label."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    pos = Y.sum(axis=0)
    auc_ok = np.flatnonzero((pos > 0) & (pos < len(Y)))
    ap_ok = np.flatnonzero(pos > 0)
    result = {}
    for key, fn, ok, why in (
        ("roc_auc", roc_auc_score, auc_ok, "needs positive and negative images"),
        ("average_precision", average_precision_score, ap_ok, "needs positive images"),
    ):
        per = {lab: None for lab in labels}
        for j in ok:
            per[labels[j]] = float(fn(Y[:, j], P[:, j]))
        skipped = [lab for lab, v in per.items() if v is None]
        if skipped:
            notes.append(f"{key} undefined for {', '.join(skipped)} ({why} in this split)")
        macro = float(fn(Y[:, ok], P[:, ok], average="macro")) if len(ok) else None
        micro = float(fn(Y, P, average="micro")) if Y.any() and not Y.all() else None
        result[key] = {"macro": macro, "micro": micro, "per_label": per}
    return result


def _confused_pairs(
    mistakes: list[tuple[int, int, float, Any]], labels: list[str]
) -> list[dict[str, Any]]:
    """(true index, predicted index, confidence, image id) per mistake -> top pairs."""
    groups: dict[tuple[int, int], list[tuple[float, Any]]] = {}
    for t, p, c, image_id in mistakes:
        groups.setdefault((t, p), []).append((c, image_id))
    order = sorted(groups, key=lambda k: (-len(groups[k]), k))
    out = []
    for t, p in order[:TOP_PAIRS]:
        examples = sorted(groups[(t, p)], key=lambda e: -e[0])[:EXAMPLES_PER_PAIR]
        out.append(
            {
                "true": labels[t],
                "predicted": labels[p],
                "count": len(groups[(t, p)]),
                "examples": [image_id for _, image_id in examples],
            }
        )
    return out


def _absent_notes(Y: np.ndarray, labels: list[str]) -> list[str]:
    absent = [lab for lab, n in zip(labels, Y.sum(axis=0), strict=True) if n == 0]
    if not absent:
        return []
    return [f"labels absent from this split: {', '.join(absent)}"]


def _row_sums(P: np.ndarray) -> np.ndarray:
    s = P.sum(axis=1, keepdims=True)
    return np.where(s > 0, s, 1.0)


def _clean(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _num(obj)
    return obj
