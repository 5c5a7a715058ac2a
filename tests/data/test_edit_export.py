"""Edits (exclude, relabel) make new versions; exports import back to the same dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autovision.data import edit
from autovision.data.edit import exclude, issue_exclusions, relabel
from autovision.data.export import export_dataset
from autovision.data.importer import import_dataset
from autovision.errors import DatasetError


def save(path: Path, seed: int, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path, format=fmt)


@pytest.fixture
def pets(workspace, tmp_path: Path):
    src = tmp_path / "pets"
    for i in range(20):
        fmt, ext = ("JPEG", "jpg") if i % 5 == 0 else ("PNG", "png")
        save(src / ("cat" if i < 10 else "dog") / f"{i}.{ext}", i, fmt)
    return import_dataset(workspace, "pets", src).version


@pytest.fixture
def tagged(workspace, tmp_path: Path):
    """Multi-label CSV with ML_USE, metadata, an unlabeled image and a duplicate file."""
    d = tmp_path / "tagged"
    rows = []
    for i in range(16):
        save(d / "img" / f"{i}.png", i)
        labels = [["sky"], ["sky", "sea"], ["sea", "sand"], []][i % 4]
        use = ["TRAIN", "VALIDATION", "TEST", ""][i % 4]
        meta = [f"meta:site=s{i % 3}"] if i % 2 else []
        rows.append(",".join(([use] if use else []) + [f"img/{i}.png", *labels, *meta]))
    rows.append("TEST,img/0.png,sky")
    (d / "d.csv").write_text("\n".join(rows) + "\n")
    return import_dataset(workspace, "tagged", d / "d.csv").version


# ---- exclude -----------------------------------------------------------------------------


def test_exclude_ids(workspace, pets) -> None:
    new = exclude(workspace, "pets", ids=[1, 2, 20])
    assert (new.version, new.parent_version) == (2, 1)
    assert [it.id for it in new.items] == list(range(3, 20))
    assert {it.id: it.split for it in new.items} == {
        it.id: it.split for it in pets.items if it.id not in (1, 2, 20)
    }
    assert "excluded 3 images" in new.note and "1, 2, 20" in new.note
    assert new.params["excluded"] == [1, 2, 20]
    assert workspace.dataset("pets@1").items == pets.items  # versions are immutable


def test_exclude_errors_and_no_change(workspace, pets) -> None:
    with pytest.raises(DatasetError, match="no image with id 99"):
        exclude(workspace, "pets", ids=[1, 99])
    with pytest.raises(DatasetError, match="leave pets@1 empty"):
        exclude(workspace, "pets", ids=range(1, 21))
    with pytest.raises(DatasetError, match="unknown issue typo"):
        exclude(workspace, "pets", issues="exact_duplicates,typo")
    assert exclude(workspace, "pets", ids=[]).version == 1
    assert workspace.versions("pets") == [1]


def _img(i: int, split: str, labels=("cat",)) -> dict[str, Any]:
    return {"id": i, "source": f"{i}.png", "labels": list(labels), "split": split}


FAKE_REPORT = {
    "issues": {
        "exact_duplicates": [{"images": [_img(3, "test"), _img(4, "train"), _img(5, "train")]}],
        "near_duplicates": [{"images": [_img(5, "train"), _img(6, "validation")]}],
        "conflicting_labels": [{"images": [_img(7, "train"), _img(8, "train", ("dog",))]}],
        "split_leakage": [
            {"kind": "exact", "images": [_img(9, "test"), _img(10, "validation")]},
            {"kind": "near", "images": [_img(11, "test"), _img(12, "train")]},
        ],
        "quality": {"blurry": [{"id": 13, "source": "13.png", "value": 0.1}], "dark": []},
    }
}


@pytest.mark.parametrize(
    ("issues", "dropped"),
    [
        ("exact_duplicates", {3, 5}),
        ("exact_duplicates,near_duplicates", {3, 5, 6}),
        ("conflicting_labels", {7, 8}),
        ("split_leakage", {9, 11}),
        ("blurry", {13}),
        ("quality", {13}),
        ("quality.dark", set()),
    ],
)
def test_issue_exclusions_rules(issues: str, dropped: set[int]) -> None:
    assert issue_exclusions(FAKE_REPORT, edit.parse_issues(issues)) == dropped


def test_exclude_by_issues_uses_the_report(workspace, pets, monkeypatch) -> None:
    monkeypatch.setattr(edit._report, "dataset_report", lambda ds: FAKE_REPORT)
    new = exclude(workspace, "pets", issues=["exact_duplicates", "blurry"])
    assert sorted(set(range(1, 21)) - {it.id for it in new.items}) == [3, 5, 13]
    assert "exact_duplicates, blurry" in new.note and new.parent_version == 1


# ---- relabel -----------------------------------------------------------------------------


def test_relabel(workspace, pets, tmp_path: Path) -> None:
    f = tmp_path / "fix.csv"
    f.write_text("id,label\n1,dog\n2, cat \n\n3,\n4,bird\n")
    new = relabel(workspace, "pets", f)
    by_id = new.by_id()
    assert by_id[1].labels == ("dog",) and by_id[3].labels == () and by_id[4].labels == ("bird",)
    assert by_id[2].labels == ("cat",)  # unchanged, not counted
    assert new.params["relabeled"] == [1, 3, 4] and new.parent_version == 1
    assert [it.split for it in new.items] == [it.split for it in pets.items]
    assert relabel(workspace, "pets", f).version == 2  # nothing new to change


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1,dog\n99,cat\n", "line 2: pets@1 has no image with id 99"),
        ("x,dog\n", "line 1: 'x' is not an image id"),
        ("1,dog,cat\n", "line 1: 2 labels but pets@1 is single-label"),
        ("1,dog\n1,cat\n", "line 2: image 1 is listed twice"),
        ("1,a/b\n", "line 1: label 'a/b' contains a path separator"),
        ("\n", "empty"),
    ],
)
def test_relabel_errors(workspace, pets, tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "fix.csv"
    f.write_text(text)
    with pytest.raises(DatasetError, match=match):
        relabel(workspace, "pets", f)
    assert workspace.versions("pets") == [1]


def test_relabel_multi_label(workspace, tagged, tmp_path: Path) -> None:
    f = tmp_path / "fix.csv"
    f.write_text("1,sea,sky,sand\n")
    new = relabel(workspace, "tagged", f)
    assert new.by_id()[1].labels == ("sand", "sea", "sky") and new.multi_label


# ---- export ------------------------------------------------------------------------------


def _same(a, b, *, splits: bool = True, metadata: bool = True) -> None:
    def key(it):
        return (
            it.sha256,
            it.labels,
            it.split if splits else "",
            tuple(sorted(it.metadata.items())) if metadata else (),
        )

    assert sorted(map(key, a.items)) == sorted(map(key, b.items))
    assert a.multi_label == b.multi_label


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_round_trip_multi_label(workspace, tagged, tmp_path: Path, fmt: str) -> None:
    summary = export_dataset(workspace, "tagged", tmp_path / "out", format=fmt)
    assert summary["images"] == 17 and summary["path"].endswith(f"dataset.{fmt}")
    back = import_dataset(workspace, "back", summary["path"], strict=True).version
    _same(tagged, back)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_round_trip_single_label(workspace, pets, tmp_path: Path, fmt: str) -> None:
    summary = export_dataset(workspace, "pets@1", tmp_path / "out", format=fmt)
    back = import_dataset(workspace, "back", summary["path"], strict=True).version
    _same(pets, back)
    names = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert "1.jpg" in names and "2.png" in names  # original extensions


def test_round_trip_folder(workspace, pets, tmp_path: Path) -> None:
    out = tmp_path / "out"
    export_dataset(workspace, "pets", out, format="folder")
    assert sorted(p.name for p in out.iterdir()) == ["cat", "dog"]
    back = import_dataset(workspace, "back", out, strict=True).version
    _same(pets, back, splits=False)


def test_export_rules(workspace, tagged, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="several labels"):
        export_dataset(workspace, "tagged", tmp_path / "f", format="folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DatasetError, match="new or empty"):
        export_dataset(workspace, "tagged", tmp_path / "full")
    with pytest.raises(DatasetError, match="unknown export format"):
        export_dataset(workspace, "tagged", tmp_path / "o", format="xml")
    export_dataset(workspace, "tagged", tmp_path / "j", format="jsonl")
    first = json.loads((tmp_path / "j" / "dataset.jsonl").read_text().splitlines()[0])
    assert first["dataItemResourceLabels"] == {"aiplatform.googleapis.com/ml_use": "training"}
