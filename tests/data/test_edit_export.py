"""Edits (exclude, relabel) make new versions; exports import back to the same dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autovision.checks.store import load_checks, save_check
from autovision.data import edit
from autovision.data.edit import exclude, issue_exclusions, relabel, relabel_suggestions
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
    monkeypatch.setattr(edit._report, "dataset_report", lambda ds, **kw: FAKE_REPORT)
    new = exclude(workspace, "pets", issues=["exact_duplicates", "blurry"])
    assert sorted(set(range(1, 21)) - {it.id for it in new.items}) == [3, 5, 13]
    assert "exact_duplicates, blurry" in new.note and new.parent_version == 1


def test_a_duplicate_group_listed_once_elsewhere_still_dedupes() -> None:
    """The report lists each finding once (a conflicting exact group is not also under
    exact_duplicates); its "duplicate" tag keeps exact_duplicates cleaning it."""
    report = {
        "issues": {
            "exact_duplicates": [],
            "conflicting_labels": [
                {"duplicate": "exact", "images": [_img(7, "train"), _img(8, "train", ("dog",))]}
            ],
            "split_leakage": [
                {"duplicate": "near", "images": [_img(11, "test"), _img(12, "train")]}
            ],
        }
    }
    assert issue_exclusions(report, ["exact_duplicates"]) == {8}
    assert issue_exclusions(report, ["near_duplicates"]) == {11}
    by_issue = edit.issue_exclusions_by_issue(report, ["exact_duplicates", "conflicting_labels"])
    assert by_issue == {"exact_duplicates": {8}, "conflicting_labels": {7, 8}}


# ---- model-based issues (stored by `dataset check`) --------------------------------------


def _entry(it, suggested: str, score: float, suggested_score: float) -> dict[str, Any]:
    return {
        "id": it.id,
        "source": it.source,
        "split": it.split,
        "label": it.labels[0],
        "suggested": suggested,
        "score": score,
        "suggested_score": suggested_score,
    }


@pytest.fixture
def checked(workspace, pets):
    """pets@1 with a stored label-issue check (two train/validation items, one test item)
    and an outlier check (one item): ``(ds, {"train": [...], "test": [...], "outlier": id})``."""
    fit = [it for it in pets.items if it.split in ("train", "validation")]
    test = [it for it in pets.items if it.split == "test"]
    flips = {"cat": "dog", "dog": "cat"}
    a, b, t = fit[0], fit[-1], test[0]
    save_check(
        workspace,
        pets,
        "label_issues",
        {
            "method": "test",
            "folds": 5,
            "checked": len(fit),
            "checked_test": len(test),
            "multi_label": False,
            "label_issues": [
                _entry(a, flips[a.labels[0]], 0.05, 0.9),
                _entry(b, flips[b.labels[0]], 0.2, 0.4),
            ],
            "label_issues_test": [_entry(t, flips[t.labels[0]], 0.1, 0.8)],
        },
        {"folds": 5},
    )
    outlier = fit[1]
    save_check(
        workspace,
        pets,
        "outliers",
        {
            "method": "test",
            "k": 5,
            "threshold": 1.0,
            "checked": 20,
            "outliers": [{"id": outlier.id, "score": 3.0}],
            "ranking": [{"id": outlier.id, "score": 3.0}],
        },
    )
    return pets, {"train": [a, b], "test": [t], "outlier": outlier.id}


def test_exclude_label_issues_and_outliers(workspace, checked) -> None:
    ds, flagged = checked
    a, b = flagged["train"]
    new = exclude(workspace, "pets", issues="label_issues")
    assert {it.id for it in ds.items} - {it.id for it in new.items} == {a.id, b.id}
    assert flagged["test"][0].id in new.by_id()  # the test-split finding stays
    assert new.params["excluded"] == sorted([a.id, b.id])
    assert new.params["excluded_issues"] == {"label_issues": sorted([a.id, b.id])}
    assert "label_issues" in new.note and new.parent_version == 1

    new = exclude(workspace, "pets@1", issues="label_issues_test,outliers")
    t = flagged["test"][0].id
    assert {it.id for it in ds.items} - {it.id for it in new.items} == {t, flagged["outlier"]}
    assert new.params["excluded_issues"] == {
        "label_issues_test": [t],
        "outliers": [flagged["outlier"]],
    }


def test_exclude_a_check_never_computed(workspace, pets) -> None:
    with pytest.raises(DatasetError, match=r"run `autovision dataset check pets@1 --label-issues`"):
        exclude(workspace, "pets", issues="exact_duplicates,label_issues")
    with pytest.raises(DatasetError, match=r"dataset check pets@1 --label-issues --outliers`"):
        exclude(workspace, "pets", issues="label_issues_test,outliers")
    assert workspace.versions("pets") == [1]


def test_a_check_of_another_version_does_not_count(workspace, checked) -> None:
    exclude(workspace, "pets", ids=[checked[0].items[-1].id])  # pets@2: no check stored
    with pytest.raises(DatasetError, match="dataset check pets@2 --outliers"):
        exclude(workspace, "pets", issues="outliers")


def test_relabel_suggestions(workspace, checked) -> None:
    ds, flagged = checked
    a, b = flagged["train"]
    computed = load_checks(workspace, ds)["label_issues"]["computed_at"]
    new = relabel_suggestions(workspace, "pets")  # min_score 0.5: a (0.9), not b (0.4)
    assert new.params["relabeled"] == [a.id] and new.parent_version == 1
    assert new.by_id()[a.id].labels != a.labels and new.by_id()[b.id].labels == b.labels
    assert new.by_id()[flagged["test"][0].id].labels == flagged["test"][0].labels
    (s,) = new.params["suggestions"]
    assert s == {
        "id": a.id,
        "from": a.labels[0],
        "to": new.by_id()[a.id].labels[0],
        "score": 0.05,
        "suggested_score": 0.9,
        "check_computed_at": computed,
    }
    assert [it.split for it in new.items] == [it.split for it in ds.items]

    low = relabel_suggestions(workspace, "pets@1", min_score=0.3, include_test=True)
    assert low.params["relabeled"] == sorted([a.id, b.id, flagged["test"][0].id])
    only = relabel_suggestions(workspace, "pets@1", min_score=0.0, ids=[b.id])
    assert only.params["relabeled"] == [b.id]
    assert relabel_suggestions(workspace, "pets@1", min_score=0.95).version == 1  # none


def test_relabel_suggestions_errors(workspace, pets, checked) -> None:
    ds, flagged = checked
    t = flagged["test"][0].id
    other = next(it.id for it in ds.items if it.id not in {t, *(e.id for e in flagged["train"])})
    with pytest.raises(DatasetError, match=f"no stored label suggestion .* id {other}$"):
        relabel_suggestions(workspace, "pets", ids=[other])
    with pytest.raises(DatasetError, match=rf"\(train or validation\) for id {t}$"):
        relabel_suggestions(workspace, "pets", ids=[t])  # a test-split one needs include_test
    with pytest.raises(DatasetError, match="between 0 and 1"):
        relabel_suggestions(workspace, "pets", min_score=2)
    exclude(workspace, "pets", ids=[1])
    with pytest.raises(DatasetError, match="dataset check pets@2 --label-issues"):
        relabel_suggestions(workspace, "pets")


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
