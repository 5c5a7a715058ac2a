"""The stored evaluation behind the console's model page: computed once per model and
dataset content, its confusion-matrix cells, the slider's reference and the comparison."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from autovision.evaluation.confidence import THRESHOLDS, metrics_at, threshold_table
from autovision.evaluation.curves import pr_curves
from autovision.evaluation.stored import (
    cell_ids,
    compare_versions,
    item_sources,
    matrices,
    slider_data,
    stored_evaluation,
)

from .conftest import KNOWN_IDS, LABELS, FakePackage


def _random(task: str, n: int = 60, labels: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    P = (
        rng.dirichlet(np.ones(labels), size=n)
        if task == "single-label"
        else rng.random((n, labels))
    )
    if task == "single-label":
        Y = np.eye(labels, dtype=np.int64)[rng.integers(0, labels, n)]
    else:
        Y = (rng.random((n, labels)) < 0.4).astype(np.int64)
    return Y, P


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_metrics_at_is_the_threshold_tables_micro_average(task):
    Y, P = _random(task)
    for row in threshold_table(Y, P, task):
        at = metrics_at(Y, P, task, row["threshold"])["micro"]
        for key in ("precision", "recall", "f1", "coverage"):
            assert at[key] == pytest.approx(row[key], abs=1e-12) or at[key] is row[key] is None


@pytest.mark.parametrize("task", ["single-label", "multi-label"])
def test_metrics_at_per_label_is_scikit_learns(task):
    Y, P = _random(task, seed=3)
    for t in (0.0, 0.3, 0.55, 0.9):
        Yt = (
            np.eye(P.shape[1], dtype=np.int64)[P.argmax(1)] * (P.max(1) >= t)[:, None]
            if task == "single-label"
            else np.greater_equal(P, t).astype(np.int64)
        )
        p, r, f, _ = precision_recall_fscore_support(Y, Yt, average=None, zero_division=np.nan)
        got = metrics_at(Y, P, task, t)["per_label"]
        for j, m in enumerate(got):
            for key, ref in (("precision", p[j]), ("recall", r[j]), ("f1", f[j])):
                assert (m[key] is None) == bool(np.isnan(ref)), (t, j, key)
                if m[key] is not None:
                    assert m[key] == pytest.approx(ref, abs=1e-12)


def test_single_label_precision_rises_and_recall_falls_with_the_threshold():
    Y, P = _random("single-label", n=400, seed=5)
    P = 0.6 * P + 0.4 * Y * P.max(1, keepdims=True)  # confident when right, more often
    rows = [metrics_at(Y, P, "single-label", t)["micro"] for t in THRESHOLDS[:14]]
    recalls = [r["recall"] for r in rows]
    assert recalls == sorted(recalls, reverse=True) and recalls[0] > recalls[-1]
    assert rows[-1]["precision"] > rows[0]["precision"]


def test_stored_evaluation_is_made_once_and_keyed_by_dataset_content(known, monkeypatch):
    import autovision.evaluation.predictions as predictions

    calls = []
    real = predictions.predict_items
    monkeypatch.setattr(
        predictions, "predict_items", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    ev = stored_evaluation(known, "m-known")
    assert ev["dataset"] == "known@1" and ev["ids"] == KNOWN_IDS
    assert ev["metrics"]["accuracy"] == pytest.approx(0.9)
    files = list((known.cache_dir / "evaluations").rglob("*.json"))
    assert len(files) == 1
    from autovision.evaluation import stored

    stored._memo.clear()  # as a restarted console: from the file, not predicted again
    again = stored_evaluation(known, "m-known")
    assert again == ev and len(calls) == 1
    assert not (known.models_dir / "m-known" / "metrics.json").exists()  # no side effect


def test_cells_hold_the_images_of_their_true_and_predicted_pair(known):
    ev = stored_evaluation(known, "m-known")
    assert cell_ids(ev, "a", "b") == [104]
    assert sorted(cell_ids(ev, "a", "a")) == [101, 102, 103]
    assert cell_ids(ev, "a", "a") == [101, 102, 103]  # most confident first
    matrix = ev["metrics"]["confusion_matrix"]["matrix"]
    for i, t in enumerate(LABELS):
        for j, p in enumerate(LABELS):
            assert len(cell_ids(ev, t, p)) == matrix[i][j]
    with pytest.raises(Exception, match="no label"):
        cell_ids(ev, "a", "zebra")
    assert item_sources(known, ev)[104] == "/src/104.png"


def test_multi_label_cells_follow_the_metrics_definition(known):
    ev = {
        "model": "m",
        "ids": [1, 2, 3],
        "true": [[0], [0, 1], [1]],
        "probs": [[0.2, 0.9], [0.8, 0.7], [0.6, 0.1]],
        "metrics": {
            "labels": ["x", "y"],
            "task": "multi-label",
            "thresholds": {"x": 0.5, "y": 0.5},
        },
    }
    assert cell_ids(ev, "x", "y") == [1]  # x missed while y wrongly predicted
    assert cell_ids(ev, "y", "x") == [3]
    assert sorted(cell_ids(ev, "x", "x")) == [2]
    assert cell_ids(ev, "y", "y") == [2]


def test_slider_data_carries_what_the_browser_needs(known):
    ev = stored_evaluation(known, "m-known")
    data = slider_data(ev)
    Y, P = matrices(ev)
    assert data["pred"] == [int(j) for j in P.argmax(1)]
    assert data["conf"] == [float(x) for x in P.max(1)]
    assert data["true"] == [[int(j) for j in np.flatnonzero(row)] for row in Y]


def test_pr_curves_run_from_low_to_high_recall():
    Y, P = _random("single-label", n=300)
    curves = pr_curves(Y, P, LABELS, max_points=50)
    assert len(curves["per_label"]) == 4 and curves["micro"]["ap"] > 0
    pts = curves["micro"]["points"]
    assert len(pts) <= 50 and pts[0][0] <= pts[-1][0] == 1.0


def test_compare_versions_measures_both_on_the_newer_dataset(known):
    d = known.model_path("m-known")
    table = dict(known.fake_packages[str(d)].table)
    worse = {k: list(reversed(v)) for k, v in table.items()}
    path = known.models_dir / "m-worse"
    path.mkdir()
    known.fake_packages[str(path)] = FakePackage(worse, LABELS, "single-label")
    known.register_model(
        "m-worse", dataset="known", dataset_version=1, task="single-label", path=path
    )
    cmp = compare_versions(known, "known@1", "known@2")
    assert cmp["dataset"] == "known@1"
    assert cmp["a"]["metrics"]["accuracy"] == pytest.approx(0.9)
    diff = cmp["b"]["metrics"]["accuracy"] - cmp["a"]["metrics"]["accuracy"]
    assert cmp["difference"]["accuracy"] == pytest.approx(diff) and diff < 0
    by_label = {r["label"]: r for r in cmp["per_label"]}
    a = by_label["a"]
    assert a["delta"] == pytest.approx(a["b"] - a["a"])
    assert by_label["d"]["a"] is None  # absent from the split: undefined, no delta
