"""The labeling queue (data/labeling.py): unlabeled images, pre-labels of the production
model ranked by uncertainty (stub and tiny real package), the draft, and the new version."""

from __future__ import annotations

import json

import pytest

from autovision.data import labeling
from autovision.errors import DatasetError
from tests.data._labeling import make_dataset, register_stub, tiny_package


@pytest.fixture
def leaves(workspace, image_bytes):
    return make_dataset(workspace, image_bytes)


def _stub_probs(monkeypatch, by_id, ds):
    sha_of = {it.id: it.sha256 for it in ds.items}
    probs = {sha_of[i]: p for i, p in by_id.items()}
    calls = []

    def fake(ws, mv, rows):
        calls.append(len(rows))
        return {r["sha256"]: probs[r["sha256"]] for r in rows if r["sha256"] in probs}

    monkeypatch.setattr(labeling, "_predict", fake)
    return calls


def test_queue_lists_unlabeled_images_in_id_order_without_a_model(workspace, leaves):
    q = labeling.label_queue(workspace, "leaves")
    assert [it["id"] for it in q["items"]] == [5, 6, 7, 8, 9, 10]
    assert q["model"] is None and q["unlabeled"] == 6 and q["remaining"] == 6
    assert q["labels"] == ["healthy", "rust"] and q["items"][0]["guess"] == []


def test_stub_model_prelabels_and_ranks_least_confident_first(
    workspace, leaves, tmp_path, monkeypatch
):
    register_stub(workspace, tmp_path, "leaves", ["healthy", "rust", "blight"])
    calls = _stub_probs(
        monkeypatch,
        {
            5: [0.9, 0.05, 0.05],
            6: [0.4, 0.35, 0.25],  # least confident
            7: [0.1, 0.8, 0.1],
            8: [0.45, 0.45, 0.10],  # same top as 9, smaller margin
            9: [0.45, 0.30, 0.25],
            # 10: the model could not read it: last, no guess
        },
        leaves,
    )
    q = labeling.label_queue(workspace, "leaves", limit=10)
    assert q["model"] == "leaves@1"
    assert [it["id"] for it in q["items"]] == [6, 8, 9, 7, 5, 10]
    first = q["items"][0]
    assert first["guess"] == ["healthy"] and first["confidence"] == pytest.approx(0.4)
    assert list(first["scores"]) == ["healthy", "rust", "blight"]
    assert q["items"][-1]["guess"] == [] and "blight" in q["labels"]
    # cached: a second look predicts only what is still missing (image 10)
    labeling.label_queue(workspace, "leaves")
    assert calls == [6, 1]


def test_only_a_production_model_prelabels_preferring_the_dataset_name(workspace, leaves, tmp_path):
    assert labeling.prelabel_model(workspace, "leaves") is None
    register_stub(workspace, tmp_path, "leaves", ["a"], model_id="m-0", alias=None)
    assert labeling.prelabel_model(workspace, "leaves") is None
    other = register_stub(workspace, tmp_path, "leaves", ["a"], name="leafnet", model_id="m-1")
    assert labeling.prelabel_model(workspace, "leaves").id == other.id
    own = register_stub(workspace, tmp_path, "leaves", ["a"], model_id="m-2")
    assert labeling.prelabel_model(workspace, "leaves").id == own.id


def test_tiny_real_package_ranks_by_its_own_probabilities(workspace, leaves, tmp_path):
    labels = ("healthy", "rust", "blight")
    path = tiny_package(workspace.models_dir / "m-real", labels)
    mv = workspace.register_model(
        "m-real", dataset="leaves", dataset_version=1, task="single-label", path=path
    )
    from autovision.models.package import ModelPackage
    from autovision.models.preprocess import preprocess
    from autovision.versions.store import set_alias

    set_alias(workspace, mv.name, mv.version, "production")
    q = labeling.label_queue(workspace, "leaves", limit=10)
    pkg = ModelPackage.load(path)
    unl = [it for it in leaves.items if not it.labels]
    probs = pkg.predict_array(
        preprocess([workspace.load_image(it) for it in unl], pkg.preprocessing)
    )
    top = {it.id: float(p.max()) for it, p in zip(unl, probs, strict=True)}
    assert [it["id"] for it in q["items"]] == sorted(top, key=lambda i: (round(top[i], 6), i))
    for it in q["items"]:
        assert it["confidence"] == pytest.approx(top[it["id"]], abs=1e-3)
        assert it["guess"][0] in labels
    cache = workspace.cache_dir / "labeling" / "m-real.json"
    assert len(json.loads(cache.read_text())) == 6


def test_draft_then_save_makes_one_version_with_lineage(workspace, leaves):
    labeling.draft_label(workspace, "leaves", 5, ["rust"])
    labeling.draft_label(workspace, "leaves", 6, ["new label"])
    labeling.draft_skip(workspace, "leaves", 7)
    q = labeling.label_queue(workspace, "leaves")
    assert [it["id"] for it in q["items"]] == [8, 9, 10]
    assert (q["drafted"], q["skipped"]) == (2, 1) and "new label" in q["labels"]
    assert workspace.dataset("leaves").version == 1  # nothing saved yet

    out = labeling.save_draft(workspace, "leaves")
    assert out == {
        "dataset": "leaves",
        "version": 2,
        "created": True,
        "labeled": 2,
        "skipped": 1,
        "stale": 0,
    }
    v2 = workspace.dataset("leaves")
    assert v2.parent_version == 1 and v2.params["labeled"] == [5, 6]
    assert v2.by_id()[5].labels == ("rust",) and v2.by_id()[6].labels == ("new label",)
    assert v2.by_id()[5].split == leaves.by_id()[5].split
    assert v2.by_id()[7].labels == () and labeling.draft(workspace, "leaves") == {}
    assert [it["id"] for it in labeling.label_queue(workspace, "leaves")["items"]] == [7, 8, 9, 10]
    audit = [json.loads(x) for x in workspace.audit_log_path.read_text().splitlines()]
    assert any(e.get("action") == "dataset.label" and e.get("labeled") == [5, 6] for e in audit)


def test_bad_answers_name_the_image_and_reason(workspace, leaves):
    with pytest.raises(DatasetError, match="no image with id 99"):
        labeling.draft_label(workspace, "leaves", 99, ["rust"])
    with pytest.raises(DatasetError, match="image 1 of leaves@1 is labeled already"):
        labeling.draft_label(workspace, "leaves", 1, ["rust"])
    with pytest.raises(DatasetError, match="single-label"):
        labeling.draft_label(workspace, "leaves", 5, ["rust", "healthy"])
    with pytest.raises(DatasetError, match="path separator"):
        labeling.draft_label(workspace, "leaves", 5, ["a/b"])
    with pytest.raises(DatasetError, match="no dataset named"):
        labeling.label_queue(workspace, "nope")


def test_stale_answers_are_dropped_and_counted(workspace, leaves):
    labeling.draft_label(workspace, "leaves", 5, ["rust"])
    labeling.draft_label(workspace, "leaves", 6, ["rust"])
    labeling.apply_labels(workspace, "leaves", {6: ["healthy"]})  # labeled meanwhile
    out = labeling.save_draft(workspace, "leaves")
    assert (out["labeled"], out["stale"], out["version"]) == (1, 1, 3)
    assert workspace.dataset("leaves").by_id()[6].labels == ("healthy",)
