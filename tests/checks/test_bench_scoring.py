"""The data-checks benchmark's fault planting and scoring, on tiny generated folders and
hand-made check results (no openclipart, no model)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load("bench_data_checks")


@pytest.fixture(scope="module")
def faults():
    return _load("faults")


def _class_folder(root: Path, classes=("a", "b", "c"), per_class: int = 34) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = Image.new("RGBA", (96, 80), (0, 0, 0, 0))
            draw = ImageDraw.Draw(img)
            x, y = (int(v) for v in rng.integers(0, 40, 2))
            fill = (80 * k, int(rng.integers(256)), 255 - 80 * k, 255)
            draw.ellipse((x, y, x + 40, y + 30), fill=fill)
            img.save(root / cls / f"{i:03d}.png")
    return root


def test_make_faults_counts_layout_and_determinism(tmp_path, faults):
    src = _class_folder(tmp_path / "src")
    truth = faults.make_faults(src, tmp_path / "one", seed=3)
    c = truth["counts"]
    # 102 images: 5% -> 5 flips, 3% -> 3 resized copies, 2% -> 2 crops/flips, 1% -> 1 outlier
    assert (c["originals"], c["label_flip"], c["resized_duplicate"], c["outlier"]) == (102, 5, 3, 1)
    assert c["crop"] + c["hflip"] == 2
    assert c["images"] == 102 + 3 + 2 + 1 == len(truth["files"])

    rows = (tmp_path / "one" / "faults.csv").read_text().splitlines()
    assert len(rows) == c["images"]
    for row in rows:
        *use, file, label = row.split(",")
        entry = truth["files"][file]
        assert (tmp_path / "one" / file).is_file()
        assert label == entry["label"]
        assert (use[0] if use else None) == entry["ml_use"]
    for f in truth["faults"]:
        if f["kind"] == "label_flip":
            assert f["label"] != f["true_label"]
            assert f["ml_use"] in ("TRAIN", "VALIDATION", "TEST")
        elif f["kind"] == "outlier":
            assert f["true_label"] is None and f["original"].startswith("skimage.data.")
        else:  # a copy: its original's label, no ML_USE, and the original is untouched
            orig = truth["files"][f["of"]]
            assert f["label"] == f["true_label"] == orig["label"] and f["ml_use"] is None
            assert orig["kind"] == "clean"
    assert {f["ml_use"] for f in truth["faults"] if f["kind"] == "label_flip"} == {
        "TRAIN",
        "VALIDATION",
        "TEST",
    }
    dup = next(f for f in truth["faults"] if f["kind"] == "resized_duplicate")
    with Image.open(tmp_path / "one" / dup["file"]) as im:
        assert im.format == "JPEG" and list(im.size) == dup["size"]

    faults.make_faults(src, tmp_path / "two", seed=3)
    assert faults.digest(tmp_path / "one") == faults.digest(tmp_path / "two")
    faults.make_faults(src, tmp_path / "three", seed=4)
    assert faults.digest(tmp_path / "one") != faults.digest(tmp_path / "three")
    assert json.loads((tmp_path / "one" / "truth.json").read_text())["seed"] == 3


def test_make_faults_refuses_to_replace_a_foreign_folder(tmp_path, faults):
    src = _class_folder(tmp_path / "src", per_class=5)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("x")
    with pytest.raises(ValueError, match="not a faults folder"):
        faults.make_faults(src, tmp_path / "keep")
    assert (tmp_path / "keep" / "precious.txt").exists()


def _truth(bench):
    """Ids: 1-6 clean, 7-8 flipped (train, test), 9 outlier, 10 resized copy of 1, 11 crop
    of 2, 12 hflip of 3."""
    files, splits = {}, {}

    def add(i, kind, split, label="a", true="a", of=None):
        files[f"images/{i:05d}.png"] = {
            "kind": kind,
            "original": f"src/{i}.png",
            "true_label": true,
            "label": label,
            "ml_use": None,
            "of": None if of is None else f"images/{of:05d}.png",
        }
        splits[i] = split

    for i in range(1, 7):
        add(i, "clean", "train")
    add(7, "label_flip", "train", label="b")
    add(8, "label_flip", "test", label="b")
    add(9, "outlier", "validation", true=None)
    add(10, "resized_duplicate", "train", of=1)
    add(11, "crop", "test", of=2)
    add(12, "hflip", "train", of=3)
    items = [
        SimpleNamespace(id=i, source=f"/somewhere/images/{i:05d}.png", split=s)
        for i, s in splits.items()
    ]
    return bench.map_truth(items, {"files": files})


def test_map_truth_and_landed(bench):
    t = _truth(bench)
    assert t.flipped == {7, 8} and t.outliers == {9}
    assert t.of == {10: 1, 11: 2, 12: 3} and t.family(10) == 1
    landed = bench.landed(t)
    assert landed["crop"]["leaked"] == 1 and landed["resized_duplicate"]["same_split"] == 1
    assert landed["label_flip"] == {"train": 1, "validation": 0, "test": 1}
    with pytest.raises(ValueError, match="not imported"):
        bench.map_truth([], {"files": {"images/00001.png": {}}})


def test_score_label_issues(bench):
    t = _truth(bench)
    check = {
        "label_issues": [
            {"id": 7, "suggested": "a"},
            {"id": 4, "suggested": "b"},  # a false alarm
            {"id": 9, "suggested": "b"},  # the outlier: counts neither way
        ],
        "label_issues_test": [{"id": 8, "suggested": "c"}],
    }
    s = bench.score_label_issues(check, t)
    assert s["train_validation"] == {
        "planted": 1,
        "flagged": 2,
        "found": 1,
        "recall": 1.0,
        "precision": 0.5,
    }
    assert s["test"]["recall"] == 1.0 and s["test"]["precision"] == 1.0
    assert s["all"]["recall"] == 1.0 and s["all"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["outliers_flagged"] == 1 and s["suggested_true_label"] == 0.5
    assert bench.score_label_issues(None, t)["all"]["recall"] == 0.0


def test_score_pairs_and_groups(bench):
    t = _truth(bench)
    # 10~1 right; 11~2 through a chain 11-5-2 (found; 11-5 wrong: a copy with another image;
    # 5-2 unknown: two untouched images); 4~6 unknown (natural look-alikes?); 12-10 wrong
    pairs = [(1, 10, 0.99), (11, 5, 0.9), (5, 2, 0.9), (4, 6, 0.95), (10, 12, 0.91)]
    s = bench.score_pairs(pairs, t)
    assert s["resized_duplicate"] == {
        "planted": 1,
        "found": 1,
        "recall": 1.0,
        "pairs": 2,
        "right": 1,
        "precision": 0.5,
    }
    assert s["crop"]["found"] == 1 and s["crop"]["precision"] == 0.0
    assert s["hflip"]["found"] == 0 and s["hflip"]["pairs"] == 1
    assert s["crop_or_flip"]["recall"] == 0.5 and s["crop_or_flip"]["pairs"] == 2
    assert s["recall"] == pytest.approx(2 / 3, abs=1e-4)
    # precision over the 3 pairs with a planted copy; the 2 others unknown, not wrong
    assert (s["pairs"], s["copy_pairs"], s["right_pairs"], s["unknown_pairs"]) == (5, 3, 1, 2)
    assert s["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["unknown_examples"] == [
        ["src/5.png", "src/2.png", 0.9],
        ["src/4.png", "src/6.png", 0.95],
    ]
    assert s["wrong_examples"][0] == ["src/11.png", "src/5.png", 0.9]
    # the strict figures: every pair; pairs with a member of a planted family (1, 2, 3 too)
    assert s["precision_all"] == 0.2 and s["precision_planted"] == 0.25
    assert s["natural_pairs"] == 1
    # a copy with its original and with another copy of the same original: both right
    t2 = _truth(bench)
    t2.of[6], t2.kind[6] = 1, "crop"
    both = bench.score_pairs([(1, 10, 0.99), (1, 6, 0.95), (6, 10, 0.94)], t2)
    assert both["precision"] == 1.0 and both["crop"]["precision"] == 1.0

    report = {
        "issues": {
            "near_duplicates": [{"images": [{"id": 1}, {"id": 10}]}],
            "split_leakage": [{"kind": "near", "images": [{"id": 2}, {"id": 11}, {"id": 5}]}],
        }
    }
    groups = bench.report_groups(report)
    assert groups == [[1, 10], [2, 11, 5]]
    g = bench.score_pairs(bench.group_pairs(groups), t)
    assert g["crop"]["recall"] == 1.0 and g["pairs"] == 4 and g["right_pairs"] == 2
    assert g["copy_pairs"] == 3 and g["unknown_pairs"] == 1


def test_score_outliers_and_goals(bench):
    t = _truth(bench)
    ranking = [{"id": i} for i in (9, *range(1, 9), *range(10, 13))] * 10  # 120 entries
    check = {"checked": 120, "ranking": ranking, "outliers": [{"id": 9}, {"id": 3}]}
    s = bench.score_outliers(check, t, 12)
    assert s["top_n"] == 3 and s["top"]["recall"] == 1.0 and s["ranks"] == [1]
    assert s["flagged"]["precision"] == 0.5
    missed = bench.score_outliers({"checked": 12, "ranking": [{"id": 1}, {"id": 9}]}, t, 12)
    assert missed["top_n"] == 1 and missed["top"]["recall"] == 0.0

    checks = {
        "label_issues": {"label_issues": [{"id": 7}], "label_issues_test": [{"id": 8}]},
        "content_duplicates": {"pairs": [[1, 10, 0.99], [2, 11, 0.9], [3, 12, 0.9]]},
        "outliers": check,
    }
    scores = bench.score_all(t, {"issues": {}}, checks, 12)
    met = bench.goals_met(scores, 30.0)
    assert met == {
        "label_flips": True,
        "content_duplicates": True,
        "outliers_top": True,
        "check_seconds": True,
    }
    assert bench.goals_met(scores, 121.0)["check_seconds"] is False
