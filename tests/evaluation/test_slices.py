"""Fairness by slice: a deliberately harder metadata value is flagged, a balanced one not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autovision.evaluation import evaluate
from autovision.evaluation.bootstrap import interval, resampled
from autovision.evaluation.slices import parse_keys, slice_metrics

from .conftest import FakePackage, make_item, png

LABELS = ["cat", "dog"]


def _slice_workspace(ws, wrong_per_camera: dict[str, int], per_camera: int = 60):
    """Test images of two cameras (half cat, half dog) and a light, 3 images of ``rare``;
    the fake model errs on the first ``wrong_per_camera[camera]`` images of each label."""
    items, table, n = [], {}, 0
    for camera, wrong in wrong_per_camera.items():
        for k in range(per_camera):
            li = k % 2
            color = (n % 250, n // 250, 9)
            p = [0.8, 0.2] if li == 0 else [0.2, 0.8]
            if k // 2 < wrong // 2 + (li == 0) * (wrong % 2):
                p = p[::-1]
            light = "day" if k % 3 else "night"
            items.append(
                make_item(ws, n + 1, png(color), [LABELS[li]], "test", camera=camera, light=light)
            )
            table[color] = p
            n += 1
    for _ in range(3):
        color = (n % 250, n // 250, 9)
        items.append(make_item(ws, n + 1, png(color), ["cat"], "test", camera="rare"))
        table[color] = [0.1, 0.9]  # always wrong, but too few to flag
        n += 1
    items.append(make_item(ws, n + 1, png((1, 1, 1)), ["cat"], "train"))
    items.append(make_item(ws, n + 2, png((2, 2, 2)), ["dog"], "train"))
    ws.create_version("cams", items, multi_label=False)
    model_dir = ws.models_dir / "m-cams"
    model_dir.mkdir(parents=True)
    ws.register_model("m-cams", dataset="cams", dataset_version=1, task="single-label",
                      path=model_dir)  # fmt: skip
    ws.fake_packages[str(model_dir)] = FakePackage(table, LABELS, "single-label")
    return ws


def test_a_harder_camera_is_flagged(known, tmp_path):
    ws = _slice_workspace(known, {"new": 2, "old": 14})  # accuracy 0.967 vs 0.767
    report = tmp_path / "report.html"
    result = evaluate(ws, "m-cams", slice_by="camera,light", report=report)
    s = result["slices"]["camera"]
    by = {x["value"]: x for x in s["values"]}
    assert by["new"]["accuracy"] == pytest.approx(58 / 60)
    assert by["old"]["accuracy"] == pytest.approx(46 / 60)
    acc = s["gaps"]["accuracy"]
    assert acc["flagged"] and acc["between"] == ["new", "old"]
    assert acc["gap"] == pytest.approx(12 / 60) and acc["support"] == [60, 60]
    assert "recall/cat" in s["flagged"] and "recall/dog" in s["flagged"]
    assert by["old"]["flagged"] and not by["new"]["flagged"]
    # the rare camera is reported, with its own figures, and takes no part in the gaps
    assert s["insufficient_support"] == ["rare"] and by["rare"]["images"] == 3
    assert by["rare"]["accuracy"] == 0.0 and by["rare"]["insufficient_support"]
    assert all("rare" not in g["between"] for g in s["gaps"].values() if g["enough_support"])
    # the light is balanced across both cameras: nothing flagged there
    assert result["slices"]["light"]["flagged"] == []
    # JSON beside the model, in the shape the pipeline gate reads
    stored = json.loads((Path(ws.model("m-cams")["path"]) / "metrics.json").read_text())
    assert stored["slices"]["camera"]["gaps"]["accuracy"]["flagged"] is True
    assert stored["slices"]["camera"]["gaps"]["accuracy"]["between"] == ["new", "old"]
    html = report.read_text()
    assert "Fairness by slice" in html and "FLAGGED" in html and "By light" in html


def test_a_balanced_dataset_is_not_flagged(known):
    ws = _slice_workspace(known, {"new": 6, "old": 6})  # both 0.9
    s = evaluate(ws, "m-cams", slice_by="camera")["slices"]["camera"]
    assert s["flagged"] == [] and s["gaps"]["accuracy"]["gap"] == 0.0
    assert all(not g["flagged"] for g in s["gaps"].values())
    assert ws.model("m-cams")["test_metrics"]["slices_flagged"] == {"camera": []}


def test_a_higher_threshold_clears_the_flag(known):
    ws = _slice_workspace(known, {"new": 2, "old": 14})
    s = evaluate(ws, "m-cams", slice_by="camera", max_slice_gap=0.25)["slices"]["camera"]
    assert s["max_gap"] == 0.25 and not s["gaps"]["accuracy"]["flagged"]


def test_bootstrap_intervals_are_seeded_and_hold_the_figure():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    Y = np.eye(3, dtype=int)[y]
    P = np.eye(3)[np.where(rng.random(200) < 0.8, y, (y + 1) % 3)] * 0.8 + 0.05
    meta = [{"g": "ab"[i % 2]} for i in range(200)]
    a = slice_metrics(Y, P, meta, "g", task="single-label", labels=["x", "y", "z"])
    b = slice_metrics(Y, P, meta, "g", task="single-label", labels=["x", "y", "z"])
    assert a == b  # seeded
    for v in a["values"]:
        lo, hi = v["accuracy_ci"]
        assert lo <= v["accuracy"] <= hi and 0.05 < hi - lo < 0.3
        for lab in "xyz":
            lo, hi = v["per_label"][lab]["recall_ci"]
            assert lo <= v["per_label"][lab]["recall"] <= hi
    c = slice_metrics(Y, P, meta, "g", task="single-label", seed=1)
    assert c["values"][0]["accuracy_ci"] != a["values"][0]["accuracy_ci"]


def test_bootstrap_of_a_label_never_seen_is_none():
    Y = np.array([[1, 0]] * 5)
    boot = resampled(np.ones(5, bool), Y, Y, np.random.default_rng(0), 50)
    assert boot["accuracy"].shape == (50,) and boot["recall"].shape == (50, 2)
    assert interval(boot["recall"])[1] is None and interval(boot["recall"])[0] == [1.0, 1.0]


def test_parse_keys():
    assert parse_keys("skin_tone, camera,,camera") == ["skin_tone", "camera"]
    assert parse_keys(["a", "b"]) == ["a", "b"] and parse_keys(None) == []
