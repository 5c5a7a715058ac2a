"""Metrics against hand-checked values and against scikit-learn called directly."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from autovision.evaluation.confidence import THRESHOLDS
from autovision.evaluation.metrics import compute_metrics

from .conftest import KNOWN, KNOWN_IDS, LABELS

EXACT = {"rel": 1e-12, "abs": 1e-12}


@pytest.fixture
def known_metrics():
    return compute_metrics(
        [[label] for label, _, _ in KNOWN],
        [probs for _, probs, _ in KNOWN],
        LABELS,
        ids=KNOWN_IDS,
    )


def test_known_case_headline_numbers(known_metrics):
    m = known_metrics
    assert m["images"] == 10
    assert m["accuracy"] == 0.9
    assert m["top_k"] == 3
    assert m["top_k_accuracy"] == 0.9  # the mistake ranks the true label 4th
    true_p = [probs[LABELS.index(label)] for label, probs, _ in KNOWN]
    assert m["log_loss"] == pytest.approx(-sum(map(math.log, true_p)) / 10, **EXACT)
    # macro over a, b, c (d neither true nor predicted); micro = accuracy for single-label
    assert m["macro"]["precision"] == pytest.approx((1 + 0.75 + 1) / 3, **EXACT)
    assert m["macro"]["recall"] == pytest.approx((0.75 + 1 + 1) / 3, **EXACT)
    assert m["macro"]["f1"] == pytest.approx((6 / 7 + 6 / 7 + 1) / 3, **EXACT)
    assert m["micro"] == pytest.approx({"precision": 0.9, "recall": 0.9, "f1": 0.9}, **EXACT)


def test_known_case_per_label_and_confusion_matrix(known_metrics):
    m = known_metrics
    assert m["confusion_matrix"] == {
        "labels": ["a", "b", "c", "d"],
        "matrix": [[3, 1, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]],
    }
    per = m["per_label"]
    assert per["a"]["precision"] == 1.0 and per["a"]["recall"] == 0.75
    assert per["a"]["f1"] == pytest.approx(6 / 7, **EXACT) and per["a"]["support"] == 4
    assert per["b"]["precision"] == 0.75 and per["b"]["recall"] == 1.0
    assert per["b"]["f1"] == pytest.approx(6 / 7, **EXACT) and per["b"]["support"] == 3
    assert (per["c"]["precision"], per["c"]["recall"], per["c"]["f1"]) == (1.0, 1.0, 1.0)
    # d is absent from the split: undefined values are null, never a crash
    assert per["d"] == {
        "precision": None,
        "recall": None,
        "f1": None,
        "support": 0,
        "predicted": 0,
        "roc_auc": None,
        "average_precision": None,
    }
    assert m["most_confused"] == [{"true": "a", "predicted": "b", "count": 1, "examples": [104]}]
    assert [e["id"] for e in m["worst_errors"]] == [104]


def test_known_case_threshold_rows(known_metrics):
    rows = {r["threshold"]: r for r in known_metrics["confidence_thresholds"]}
    assert [r["threshold"] for r in known_metrics["confidence_thresholds"]] == list(THRESHOLDS)
    # 10 images x 3 wrong labels each = 30 negative (image, label) pairs
    assert rows[0.0] == pytest.approx(
        {"threshold": 0.0, "precision": 0.9, "recall": 0.9, "f1": 0.9,
         "false_positive_rate": 1 / 30, "coverage": 1.0}, **EXACT)  # fmt: skip
    # 0.5: the 0.42 image abstains; the 0.5 image counts (>=): 8 right, 1 wrong
    assert rows[0.5] == pytest.approx(
        {"threshold": 0.5, "precision": 8 / 9, "recall": 0.8, "f1": 16 / 19,
         "false_positive_rate": 1 / 30, "coverage": 0.9}, **EXACT)  # fmt: skip
    # 0.65: the mistake (0.62) drops out
    assert rows[0.65] == pytest.approx(
        {"threshold": 0.65, "precision": 1.0, "recall": 0.6, "f1": 0.75,
         "false_positive_rate": 0.0, "coverage": 0.6}, **EXACT)  # fmt: skip
    assert rows[0.99] == {
        "threshold": 0.99,
        "precision": None,
        "recall": 0.0,
        "f1": 0.0,
        "false_positive_rate": 0.0,
        "coverage": 0.0,
    }


def test_known_case_ranking_and_notes(known_metrics):
    m = known_metrics
    assert m["roc_auc"]["per_label"]["d"] is None
    assert m["average_precision"]["per_label"]["d"] is None
    assert any("roc_auc undefined for d" in n for n in m["notes"])
    assert any("absent from this split: d" in n for n in m["notes"])
    Y = np.array([[LABELS.index(label) == j for j in range(4)] for label, _, _ in KNOWN], int)
    P = np.array([probs for _, probs, _ in KNOWN])
    assert m["roc_auc"]["per_label"]["a"] == pytest.approx(roc_auc_score(Y[:, 0], P[:, 0]))
    assert m["roc_auc"]["macro"] == pytest.approx(roc_auc_score(Y[:, :3], P[:, :3]), **EXACT)
    assert m["roc_auc"]["micro"] == pytest.approx(roc_auc_score(Y, P, average="micro"), **EXACT)
    ap = average_precision_score(Y[:, :3], P[:, :3], average="macro")
    assert m["average_precision"]["macro"] == pytest.approx(ap, **EXACT)


def test_known_case_calibration(known_metrics):
    cal = known_metrics["calibration"]
    assert len(cal["bins"]) == 10 and sum(b["count"] for b in cal["bins"]) == 10
    # bins (0.4, 0.5]: 0.42, 0.5 right; (0.6, 0.7]: 0.62 right, 0.62 wrong; (0.7, 0.8]: 0.73;
    # (0.8, 0.9]: 0.83, 0.88, 0.86; (0.9, 1]: 0.93, 0.91
    gaps = [2 * (1 - 0.46), 2 * abs(0.5 - 0.62), 1 - 0.73, 3 * (1 - 2.57 / 3), 2 * (1 - 0.92)]
    assert cal["ece"] == pytest.approx(sum(gaps) / 10, **EXACT)
    assert cal["mce"] == pytest.approx(0.54, **EXACT)
    assert [b["count"] for b in cal["bins"]] == [0, 0, 0, 0, 2, 0, 2, 1, 3, 2]


def test_macro_roc_auc_equals_sklearn_one_vs_rest():
    rng = np.random.default_rng(1)
    y = np.arange(60) % 5
    logits = rng.normal(size=(60, 5)) + 2 * np.eye(5)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = list("vwxyz")
    m = compute_metrics([[labels[i]] for i in y], P, labels)
    assert m["roc_auc"]["macro"] == pytest.approx(roc_auc_score(y, P, multi_class="ovr"))
    assert m["notes"] == []


def test_multi_label_hand_checked():
    labels = ["sky", "tree", "water"]
    truth = [["sky", "tree"], ["sky"], ["water"], ["tree", "water"], []]
    P = [
        [0.9, 0.6, 0.1],  # predicted sky, tree: exact
        [0.7, 0.2, 0.8],  # predicted sky, water: water is a false positive
        [0.1, 0.1, 0.75],  # water: exact (threshold 0.7)
        [0.55, 0.35, 0.6],  # sky, tree (threshold 0.3): sky wrong, water missed
        [0.4, 0.1, 0.2],  # nothing: exact
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(truth, P, labels, task="multi-label", thresholds=[0.5, 0.3, 0.7])
    assert m["task"] == "multi-label"
    assert m["subset_accuracy"] == m["accuracy"] == 3 / 5
    assert m["hamming_loss"] == pytest.approx(3 / 15, **EXACT)
    assert m["top_k_accuracy"] is None
    per = m["per_label"]
    assert per["sky"]["precision"] == pytest.approx(2 / 3) and per["sky"]["recall"] == 1.0
    assert per["sky"]["f1"] == pytest.approx(0.8, **EXACT)
    assert (per["tree"]["precision"], per["tree"]["recall"]) == (1.0, 1.0)
    assert per["water"]["precision"] == 0.5 and per["water"]["recall"] == 0.5
    assert per["water"]["threshold"] == 0.7 and per["water"]["support"] == 2
    assert m["micro"]["precision"] == pytest.approx(5 / 7) and m["micro"]["recall"] == 5 / 6
    assert m["per_label_confusion"]["water"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 2}
    # diagonal: true positives; (water, sky): water missed while sky was wrongly predicted
    assert m["confusion_matrix"]["matrix"] == [[2, 0, 0], [0, 2, 0], [1, 0, 1]]
    assert m["most_confused"] == [
        {"true": "water", "predicted": "sky", "count": 1, "examples": [3]}
    ]
    Y = np.array([[lab in t for lab in labels] for t in truth], int)
    Pa = np.array(P)
    for j, lab in enumerate(labels):
        assert per[lab]["average_precision"] == pytest.approx(
            average_precision_score(Y[:, j], Pa[:, j])
        )
        assert per[lab]["roc_auc"] == pytest.approx(roc_auc_score(Y[:, j], Pa[:, j]))
    assert m["average_precision"]["micro"] == pytest.approx(
        average_precision_score(Y, Pa, average="micro")
    )
    assert m["roc_auc"]["macro"] == pytest.approx(roc_auc_score(Y, Pa, average="macro"))
    # thresholds apply to every label score on its own
    row = {r["threshold"]: r for r in m["confidence_thresholds"]}[0.5]
    assert row["coverage"] == 0.8 and row["precision"] == pytest.approx(5 / 7)
    assert row["false_positive_rate"] == pytest.approx(2 / 9)


def test_degenerate_splits_give_strict_json():
    one = compute_metrics([["a"]], [[0.2, 0.8]], ["a", "b"])
    assert one["accuracy"] == 0.0 and one["roc_auc"]["macro"] is None
    json.dumps(one, allow_nan=False)
    perfect = compute_metrics([["a"], ["b"]], [[1.0, 0.0], [0.0, 1.0]], ["a", "b"])
    assert perfect["log_loss"] < 1e-9 and perfect["most_confused"] == []
    json.dumps(perfect, allow_nan=False)
    with pytest.raises(ValueError, match="not among the model's labels"):
        compute_metrics([["zebra"]], [[0.5, 0.5]], ["a", "b"])
