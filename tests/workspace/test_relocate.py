"""A workspace can be moved: nothing in its database is an absolute path. A copy serves
predictions and loads its images with the original deleted; a workspace of the schema
before relative paths is rewritten by the migration, even when copied before upgrading."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from autovision.workspace import Workspace

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

MODEL = "m-reloc"
LABELS = ("cat", "dog")


def _package(ws: Workspace) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    return save_package(
        ws.models_dir / MODEL,  # where training writes its packages
        create_model("compact_cnn", num_classes=len(LABELS), pretrained=False),
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std),
    )


def _client(ws: Workspace):
    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    settings = ServerSettings(key_cache_ttl_s=0.0, allowed_hosts=["testserver"])
    return TestClient(create_app(ws, [MODEL], settings=settings))


def _predict(ws: Workspace, data: bytes) -> dict:
    with _client(ws) as client:
        body = {"instances": [{"content": base64.b64encode(data).decode()}]}
        r = client.post(f"/v1/models/{MODEL}:predict", json=body)
        assert r.status_code == 200, r.text
        client.app.state.server.plog.flush()
        return r.json()


def _texts(ws: Workspace) -> list[str]:
    """Every text and JSON value stored in every table, as text."""
    out = []
    with ws.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                out.extend(str(v) for v in row if v is not None)
    return out


def _build(root: Path, image_folder, image_bytes) -> tuple[Workspace, bytes]:
    from autovision.data.importer import import_dataset

    ws = Workspace(root)
    import_dataset(ws, "pets", image_folder(labels=LABELS, per_label=4))
    path = _package(ws)
    ws.register_model(MODEL, dataset="pets", dataset_version=1, task="single-label", path=path)
    data = image_bytes(1, 40, 7)
    _predict(ws, data)
    return ws, data


def _check_copy(copy: Path, original: Path, data: bytes, answer: dict) -> Workspace:
    assert not original.exists()
    ws = Workspace(copy)
    assert ws.model_path(MODEL) == ws.root / "models" / MODEL
    assert _predict(ws, data)["predictions"] == answer["predictions"]
    ds = ws.dataset("pets")
    assert len(ds.items) == 8
    assert all(ws.load_image(it).size == (32, 32) for it in ds.items)
    from autovision.monitoring import log as plog

    logged = plog.query(ws, model_id=MODEL)
    assert len(logged) == 3  # two made by the original, one by the copy
    assert all(ws.blobs.get(r["image_sha256"]) == data for r in logged)
    return ws


def test_a_copied_workspace_serves_with_the_original_deleted(
    tmp_path, image_folder, image_bytes
) -> None:
    original = tmp_path / "ws"
    ws, data = _build(original, image_folder, image_bytes)
    answer = _predict(ws, data)
    with ws.Session() as s:
        from autovision.workspace.db import ModelRow

        assert s.get(ModelRow, MODEL).path == f"models/{MODEL}"
    assert not [t for t in _texts(ws) if str(original) in t]  # no row names the root
    ws.engine.dispose()

    copy = tmp_path / "elsewhere" / "restored"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    _check_copy(copy, original, data, answer)


@pytest.mark.parametrize("copied_first", [False, True], ids=["in-place", "copied-first"])
def test_the_migration_makes_old_absolute_paths_relative(
    tmp_path, image_folder, image_bytes, copied_first: bool
) -> None:
    from autovision.workspace import schema

    original = tmp_path / "ws"
    ws, data = _build(original, image_folder, image_bytes)
    answer = _predict(ws, data)
    with ws.engine.begin() as conn:  # as the code before relative paths stored it
        conn.execute(sa.text(f"DROP TABLE {schema.VERSION_TABLE}"))
        package = original / "models" / MODEL
        info = {"test_metrics": {"accuracy": 0.5, "metrics_path": str(package / "metrics.json")}}
        conn.execute(
            sa.text("UPDATE models SET path = :p, info = :i"),
            {"p": str(package), "i": json.dumps(info)},
        )
    ws.engine.dispose()

    root = original
    if copied_first:  # the copy's rows still name the original folder
        root = tmp_path / "copy"
        shutil.copytree(original, root)
        shutil.rmtree(original)
    ws = Workspace(root)
    with ws.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        stored, info = conn.execute(sa.text("SELECT path, info FROM models")).one()
    assert stored == f"models/{MODEL}"
    info = info if isinstance(info, dict) else json.loads(info)  # PostgreSQL decodes JSON
    assert info["test_metrics"] == {
        "accuracy": 0.5,
        "metrics_path": f"models/{MODEL}/metrics.json",
    }
    assert not [t for t in _texts(ws) if str(original) in t]
    if copied_first:
        _check_copy(root, original, data, answer)
    else:
        assert _predict(ws, data)["predictions"] == answer["predictions"]


def test_a_package_outside_the_workspace_keeps_its_absolute_path(tmp_path) -> None:
    ws = Workspace(tmp_path / "ws")
    outside = tmp_path / "packages" / "m-out"
    outside.mkdir(parents=True)
    ws.register_model("m-out", dataset="toy", dataset_version=1, task="single-label", path=outside)
    assert ws.model_path("m-out") == outside
    inside = ws.root / "models" / "m-in"
    inside.mkdir(parents=True)
    ws.register_model("m-in", dataset="toy", dataset_version=1, task="single-label", path=inside)
    assert ws.model_path("m-in") == inside
    assert ws.model("toy@2")["path"] == str(inside)
    from autovision.versions import store

    assert store.resolve(ws, "toy@2").path == str(inside)
