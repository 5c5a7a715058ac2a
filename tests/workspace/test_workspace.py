"""Workspace: resolution, versions, blobs, models."""

from __future__ import annotations

import pytest

from autovision.data.dataset import Item, parse_ref
from autovision.errors import DatasetError, ModelError
from autovision.workspace import Workspace, resolve_workspace_path
from autovision.workspace.blobs import BlobStore, sha256_bytes

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def _item(i: int, sha: str, label: str = "cat", split: str = "train") -> Item:
    return Item(
        id=i,
        sha256=sha,
        source=f"src/{i}.png",
        labels=(label,),
        split=split,
        width=8,
        height=8,
        format="PNG",
    )


def test_workspace_path_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOVISION_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace_path() == (tmp_path / "env").resolve()
    assert resolve_workspace_path(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv("AUTOVISION_WORKSPACE")
    assert resolve_workspace_path().name == ".autovision"


def test_versions_are_immutable_and_addressable(workspace: Workspace):
    sha = workspace.blobs.put(b"abc")
    v1 = workspace.create_version("pets", [_item(1, sha), _item(2, sha, "dog")], multi_label=False)
    v2 = workspace.create_version(
        "pets", [_item(1, sha)], multi_label=False, parent_version=1, note="excluded 2"
    )
    assert (v1.version, v2.version) == (1, 2)
    assert workspace.dataset("pets").version == 2
    assert len(workspace.dataset("pets@1").items) == 2
    assert workspace.dataset("pets@2").parent_version == 1
    assert workspace.versions("pets") == [1, 2]
    assert v1.content_hash != v2.content_hash
    assert workspace.list_datasets()[0]["latest_version"] == 2


def test_dataset_errors_are_clear(workspace: Workspace):
    with pytest.raises(DatasetError, match="no dataset named 'nope'"):
        workspace.dataset("nope")
    workspace.create_version("a", [_item(1, "0" * 64)], multi_label=False)
    with pytest.raises(DatasetError, match="no version 7"):
        workspace.dataset("a@7")
    with pytest.raises(DatasetError):
        parse_ref("a@x")


def test_item_ids_are_reserved_per_dataset(workspace: Workspace):
    first = workspace.reserve_item_ids("d", 5)
    second = workspace.reserve_item_ids("d", 2)
    assert (first, second) == (1, 6)


def test_item_ids_reserved_concurrently_never_overlap(workspace: Workspace):
    from concurrent.futures import ThreadPoolExecutor

    workspace.reserve_item_ids("d", 1)
    with ThreadPoolExecutor(6) as pool:
        firsts = list(pool.map(lambda _: workspace.reserve_item_ids("d", 10), range(60)))
    assert sorted(firsts) == list(range(2, 602, 10))  # 60 disjoint ranges, none lost


def test_a_nul_character_is_refused_naming_the_item(workspace: Workspace):
    sha = workspace.blobs.put(b"abc")
    bad = Item(3, sha, "src/3.png", ("c\x00t",), "train", 8, 8, "PNG")
    with pytest.raises(DatasetError, match=r"item 3 \('src/3.png'\): label .* NUL character"):
        workspace.create_version("pets", [_item(1, sha), bad], multi_label=False)
    assert workspace.dataset_names() == []  # nothing stored


def test_blob_store_is_content_addressed(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    sha = store.put(b"hello")
    assert sha == sha256_bytes(b"hello")
    assert store.put(b"hello") == sha
    assert store.get(sha) == b"hello"
    assert store.exists(sha)
    assert not list((tmp_path / "blobs").rglob("*.tmp"))


def test_blob_store_on_fsspec_memory_filesystem():
    store = BlobStore("memory://av-test-blobs")
    sha = store.put(b"x" * 10)
    assert store.get(sha) == b"x" * 10


def test_models_registry(workspace: Workspace, tmp_path):
    workspace.register_model(
        "m-1",
        dataset="pets",
        dataset_version=1,
        task="single-label",
        path=tmp_path,
        score=0.9,
        info={"validation": {"accuracy": 0.9}},
    )
    workspace.update_model_info("m-1", test_metrics={"accuracy": 0.8})
    info = workspace.model("m-1")
    assert info["path"] == str(tmp_path)
    assert info["validation"] == {"accuracy": 0.9}
    assert info["test_metrics"] == {"accuracy": 0.8}
    assert [m["model"] for m in workspace.list_models()] == ["m-1"]
    with pytest.raises(ModelError, match="no model 'zzz'"):
        workspace.model("zzz")
