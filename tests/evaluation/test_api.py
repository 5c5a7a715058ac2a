"""``evaluate``: the known 9-of-10 case end to end, written beside the model, label checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autovision.errors import DatasetError, ModelError
from autovision.evaluation import evaluate

from .conftest import FakePackage, make_item, png


def test_known_case_end_to_end(known):
    result = evaluate(known, "m-known")
    assert result["model"] == "m-known" and result["dataset"] == "known@1"
    assert result["split"] == "test" and result["images"] == 10
    assert result["accuracy"] == 0.9
    assert result["confusion_matrix"]["matrix"] == [
        [3, 1, 0, 0],
        [0, 3, 0, 0],
        [0, 0, 3, 0],
        [0, 0, 0, 0],
    ]
    assert result["per_label"]["a"]["recall"] == 0.75
    assert result["per_label"]["b"]["precision"] == 0.75
    assert result["label_counts"] == {"a": 4, "b": 3, "c": 3, "d": 0}
    assert result["most_confused"][0]["examples"] == [104]
    # written beside the model, and listed by `models show`
    metrics_path = Path(known.model("m-known")["path"]) / "metrics.json"
    assert result["metrics_path"] == str(metrics_path)
    assert json.loads(metrics_path.read_text()) == json.loads(json.dumps(result))
    stored = known.model("m-known")["test_metrics"]
    assert stored["accuracy"] == 0.9 and stored["dataset"] == "known@1"
    assert stored["macro_f1"] == pytest.approx(19 / 21)
    assert stored["images"] == 10 and stored["split"] == "test"
    assert stored["metrics_path"] == "models/m-known/metrics.json"  # relative to the root


def test_another_version_with_the_same_labels(known):
    ds = known.dataset("known@1")
    items = [it for it in ds.items if it.id != 104]  # drop the mistake
    known.create_version("known", items, multi_label=False, parent_version=1)
    result = evaluate(known, "m-known", dataset="known@2")
    assert result["dataset"] == "known@2" and result["images"] == 9
    assert result["accuracy"] == 1.0
    assert known.model("m-known")["test_metrics"]["dataset"] == "known@2"


def test_other_splits_are_noted_as_not_held_out(known):
    result = evaluate(known, "m-known", split="train")
    assert result["images"] == 4 and result["accuracy"] == 1.0
    assert "the 'train' split is not held out; only 'test' is" in result["notes"]


def test_dataset_with_fewer_labels_is_evaluated_with_a_note(known):
    items = [it for it in known.dataset("known@1").items if it.labels[0] in ("a", "b")]
    known.create_version("ab", items, multi_label=False)
    result = evaluate(known, "m-known", dataset="ab")
    assert result["images"] == 7 and result["accuracy"] == pytest.approx(6 / 7)
    assert "model labels not in dataset ab@1: c, d" in result["notes"]
    assert result["per_label"]["c"]["support"] == 0


def test_dataset_with_labels_the_model_does_not_know(known):
    other = [make_item(known, 1, png((1, 2, 3)), ["zebra"], "test")]
    known.create_version("zoo", other, multi_label=False)
    with pytest.raises(DatasetError, match="does not know: zebra"):
        evaluate(known, "m-known", dataset="zoo")


def test_single_label_model_on_multi_label_data(known):
    items = [make_item(known, 1, png((1, 2, 3)), ["a", "b"], "test")]
    known.create_version("multi", items, multi_label=True)
    with pytest.raises(ModelError, match="single-label"):
        evaluate(known, "m-known", dataset="multi")


def test_empty_or_unknown_split(known):
    with pytest.raises(DatasetError, match="no labelled images in the 'validation' split"):
        evaluate(known, "m-known", split="validation")
    with pytest.raises(DatasetError, match="unknown split"):
        evaluate(known, "m-known", split="holdout")
    with pytest.raises(ModelError, match="no model 'nope'"):
        evaluate(known, "nope")


def test_slices_flag_the_weak_value(known):
    result = evaluate(known, "m-known", slice_by="site", min_slice_support=3)
    s = result["slices"]["site"]
    by_value = {x["value"]: x for x in s["values"]}
    assert s["key"] == "site" and s["overall"]["accuracy"] == 0.9
    assert by_value["north"]["images"] == 6 and by_value["north"]["accuracy"] == 1.0
    assert by_value["south"]["images"] == 4 and by_value["south"]["accuracy"] == 0.75
    assert by_value["south"]["flagged"] and not by_value["north"]["flagged"]
    gap = s["gaps"]["accuracy"]
    assert gap["gap"] == 0.25 and gap["flagged"] and gap["between"] == ["north", "south"]
    assert s["flagged"] == ["accuracy"]  # recall of a: 2 images of a per site, too few
    assert s["gaps"]["recall/a"]["gap"] == 0.5 and not s["gaps"]["recall/a"]["enough_support"]
    stored = known.model("m-known")["test_metrics"]["slices_flagged"]
    assert stored == {"site": s["flagged"]}
    with pytest.raises(DatasetError, match="metadata key 'camera'.*site"):
        evaluate(known, "m-known", slice_by="camera")


def test_slices_with_too_few_images_are_reported_not_flagged(known):
    s = evaluate(known, "m-known", slice_by="site")["slices"]["site"]  # default: 30 images
    assert s["min_support"] == 30 and s["insufficient_support"] == ["north", "south"]
    assert s["gaps"]["accuracy"]["gap"] == 0.25 and not s["gaps"]["accuracy"]["flagged"]
    assert not s["gaps"]["accuracy"]["enough_support"] and s["flagged"] == []


def test_slice_gap_of_exactly_five_points_is_not_flagged():
    import numpy as np

    from autovision.evaluation.slices import slice_metrics

    # 40 images a value: "y" 2 wrong (0.95), "x" 4 wrong (0.90): a gap of exactly 0.05
    Y = np.eye(2, dtype=int)[[0] * 80]
    right, wrong = [0.9, 0.1], [0.2, 0.8]
    P = np.array([right] * 38 + [wrong] * 2 + [right] * 36 + [wrong] * 4)
    meta = [{"g": "y"}] * 40 + [{"g": "x"}] * 40
    s = slice_metrics(Y, P, meta, "g", task="single-label")
    assert s["gaps"]["accuracy"]["gap"] == pytest.approx(0.05)
    assert not s["gaps"]["accuracy"]["flagged"]
    P[-5] = wrong  # "x" now 0.875
    s = slice_metrics(Y, P, meta, "g", task="single-label")
    assert s["gaps"]["accuracy"]["flagged"] and s["gaps"]["accuracy"]["between"] == ["y", "x"]


def test_multi_label_model(known):
    labels = ["sky", "tree"]
    probs = {(7, 7, 7): [0.9, 0.2], (8, 8, 8): [0.6, 0.7], (9, 9, 9): [0.1, 0.4]}
    truth = {(7, 7, 7): ["sky"], (8, 8, 8): ["sky", "tree"], (9, 9, 9): ["tree"]}
    items = [make_item(known, i + 1, png(c), truth[c], "test") for i, c in enumerate(probs)]
    known.create_version("outdoor", items, multi_label=True)
    model_dir = known.models_dir / "m-multi"
    model_dir.mkdir()
    known.register_model(
        "m-multi", dataset="outdoor", dataset_version=1, task="multi-label", path=model_dir
    )
    known.fake_packages[str(model_dir)] = FakePackage(probs, labels, "multi-label", [0.5, 0.3])
    result = evaluate(known, "m-multi", report=model_dir / "report.html")
    assert result["task"] == "multi-label"
    assert result["subset_accuracy"] == 1.0 and result["hamming_loss"] == 0.0
    assert result["per_label"]["tree"]["threshold"] == 0.3
    assert known.model("m-multi")["test_metrics"]["subset_accuracy"] == 1.0
    assert (model_dir / "report.html").is_file()
    assert "test_metrics" not in known.model("m-known")
