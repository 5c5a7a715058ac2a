"""data/edit.set_labels: the console's "Change label" as a library call (a new version,
audited, lineage), and the version fields the dataset version page reads without items."""

from __future__ import annotations

import json

import pytest

from autovision.checks.store import save_check
from autovision.data import gallery as G
from autovision.data.dataset import Item
from autovision.data.edit import exclude, set_labels
from autovision.errors import DatasetError


def _items(ws, multi=False):
    items = []
    for i in range(1, 9):
        sha = ws.blobs.put(f"img{i}".encode())
        labs = ("a", "b") if multi and i % 2 else ("a" if i % 2 else "b",)
        items.append(Item(i, sha, f"f/{i}.png", labs, "train" if i < 7 else "test", 8, 8, "PNG"))
    return items


@pytest.fixture
def single(workspace):
    return workspace.create_version("ds", _items(workspace), multi_label=False)


def test_set_labels_makes_a_version_with_lineage(workspace, single):
    new = set_labels(workspace, "ds@1", {2: "a", 3: ["c"], 1: "a"})
    assert new.version == 2 and new.parent_version == 1
    by_id = new.by_id()
    assert by_id[2].labels == ("a",) and by_id[3].labels == ("c",) and by_id[1].labels == ("a",)
    assert new.params["relabeled"] == [2, 3]  # 1 was already "a"
    assert "relabeled 2 images of ds@1" in new.note
    assert [it.split for it in new.items] == [it.split for it in single.items]
    events = [json.loads(x) for x in workspace.audit_log_path.read_text().splitlines()]
    assert any(e["action"] == "dataset.set_labels" and e["ref"] == "ds@1" for e in events)
    diff = G.version_diff(workspace, "ds", 1, 2)
    assert diff["relabeled"] == [
        {"id": 2, "from": ["b"], "to": ["a"]},
        {"id": 3, "from": ["a"], "to": ["c"]},
    ]


def test_set_labels_without_change_makes_no_version(workspace, single):
    assert set_labels(workspace, "ds@1", {1: "a"}).version == 1
    assert workspace.versions("ds") == [1]


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ({99: "a"}, "no image with id 99"),
        ({1: "a/b"}, "path separator"),
        ({1: ["a", "b"]}, "single-label"),
        ({1: ""}, "empty label"),
        ({}, "at least one image"),
    ],
)
def test_set_labels_refuses_with_the_id_and_reason(workspace, single, labels, why):
    with pytest.raises(DatasetError, match=why):
        set_labels(workspace, "ds@1", labels)
    assert workspace.versions("ds") == [1]


def test_set_labels_multi_label_and_unlabel(workspace):
    workspace.create_version("tags", _items(workspace, multi=True), multi_label=True)
    new = set_labels(workspace, "tags@1", {1: ["z", "a", "z"], 2: None})
    assert new.by_id()[1].labels == ("a", "z") and new.by_id()[2].labels == ()


def test_version_info_reads_fields_checks_and_edits(workspace, single):
    info = G.version_info(workspace, "ds@1")
    assert info["versions"] == [1] and info["images"] == 8 and info["parent_version"] is None
    assert info["checks"] == {} and info["edits"] == {}
    save_check(
        workspace, single, "label_issues", {"label_issues": [{"id": 1}], "label_issues_test": []}
    )
    save_check(workspace, single, "outliers", {"outliers": [{"id": 2}, {"id": 3}], "ranking": []})
    exclude(workspace, "ds@1", ids=[4])
    info = G.version_info(workspace, "ds@1")
    assert info["checks"]["label_issues"]["counts"] == {"label_issues": 1, "label_issues_test": 0}
    assert info["checks"]["outliers"]["counts"] == {"outliers": 2}
    assert info["versions"] == [1, 2]
    two = G.version_info(workspace, "ds@2")
    assert two["parent_version"] == 1 and two["edits"] == {"excluded": 1} and two["checks"] == {}
    assert two["images"] == 7 and "excluded 1 images" in two["note"]


def test_item_sha256(workspace, single):
    assert G.item_sha256(workspace, "ds@1", 3) == single.by_id()[3].sha256
    with pytest.raises(DatasetError, match="no image with id 42"):
        G.item_sha256(workspace, "ds@1", 42)


def test_item_detail_without_issues_does_not_compute_the_index(workspace, single):
    from pathlib import Path

    detail = G.item_detail(workspace, "ds@1", 3, issues=False)
    assert (
        detail["issues_known"] is False and detail["issues"] == [] and detail["source"] == "f/3.png"
    )
    assert not list((Path(workspace.cache_dir) / "gallery").glob("*.json"))
    assert G.item_detail(workspace, "ds@1", 3)["issues_known"] is True
    assert list((Path(workspace.cache_dir) / "gallery").glob("*.json"))
