"""Test-split predictions of a real package, exported and recomputed independently."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from autovision.errors import AutovisionError
from autovision.evaluation import evaluate, write_split_predictions
from autovision.evaluation.predictions import read_predictions

from .conftest import REAL_LABELS

EXACT = {"rel": 1e-12, "abs": 1e-12}


@pytest.fixture(scope="module")
def evaluated(real_model):
    return evaluate(real_model, "m-real")


def _from_jsonl(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return (
        [r["true_labels"][0] for r in rows],
        [r["predicted_labels"][0] for r in rows],
        np.array([[r["probabilities"][lab] for lab in REAL_LABELS] for r in rows]),
        rows,
    )


def _from_csv(path):
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return (
        [r["true_labels"] for r in rows],
        [r["predicted_labels"] for r in rows],
        np.array([[float(r[f"p:{lab}"]) for lab in REAL_LABELS] for r in rows]),
        rows,
    )


@pytest.mark.parametrize(("suffix", "reader"), [(".jsonl", _from_jsonl), (".csv", _from_csv)])
def test_metrics_recomputed_from_the_file_equal_evaluate(
    real_model, evaluated, tmp_path, suffix, reader
):
    out = tmp_path / f"preds{suffix}"
    assert write_split_predictions(real_model, "m-real", out) == 24
    y_true, y_pred, P, rows = reader(out)
    assert len(rows) == 24 == evaluated["images"]
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert all(r["source"].startswith("/src/") for r in rows)
    # the predicted label is the top probability
    assert y_pred == [REAL_LABELS[i] for i in P.argmax(axis=1)]

    ev = evaluated
    assert accuracy_score(y_true, y_pred) == ev["accuracy"]
    assert (
        confusion_matrix(y_true, y_pred, labels=REAL_LABELS).tolist()
        == (ev["confusion_matrix"]["matrix"])
    )
    assert f1_score(y_true, y_pred, average="macro") == pytest.approx(ev["macro"]["f1"], **EXACT)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=REAL_LABELS)
    for j, lab in enumerate(REAL_LABELS):
        assert ev["per_label"][lab]["support"] == s[j]
        assert ev["per_label"][lab]["recall"] == pytest.approx(r[j], **EXACT)
        assert ev["per_label"][lab]["f1"] == pytest.approx(f[j], **EXACT)
    P1 = P / P.sum(axis=1, keepdims=True)
    assert log_loss(y_true, P1, labels=REAL_LABELS) == pytest.approx(ev["log_loss"], **EXACT)
    Y = np.array([[t == lab for lab in REAL_LABELS] for t in y_true], dtype=int)
    assert roc_auc_score(Y, P, average="micro") == pytest.approx(ev["roc_auc"]["micro"], **EXACT)
    assert roc_auc_score(y_true, P1, multi_class="ovr") == pytest.approx(
        ev["roc_auc"]["macro"], rel=1e-9
    )
    top = P.max(axis=1)
    correct = np.array(y_true) == np.array(y_pred)
    row = next(t for t in ev["confidence_thresholds"] if t["threshold"] == 0.5)
    assert row["coverage"] == pytest.approx((top >= 0.5).mean(), **EXACT)
    assert row["recall"] == pytest.approx((correct & (top >= 0.5)).sum() / 24, **EXACT)


def test_read_predictions_round_trip(real_model, tmp_path):
    jsonl, csv_path = tmp_path / "p.jsonl", tmp_path / "p.csv"
    write_split_predictions(real_model, "m-real", jsonl)
    write_split_predictions(real_model, "m-real", csv_path, split="test", dataset="shapes@1")
    assert read_predictions(jsonl) == read_predictions(csv_path)
    header = csv_path.read_text().splitlines()[0]
    assert header == "id,source,true_labels,predicted_labels,p:cat,p:dog,p:fox"


def test_unsupported_extension(real_model, tmp_path):
    with pytest.raises(AutovisionError, match="unsupported predictions format '.parquet'"):
        write_split_predictions(real_model, "m-real", tmp_path / "p.parquet")
