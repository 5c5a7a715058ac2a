"""A workspace whose blobs live in S3 (a local moto server): dataset images, model packages,
prediction-log images and evaluation results are in the bucket, and a second machine (a
fresh empty root, the same database file, the same blob URL) predicts and serves a model
trained on the first one, whose folder is gone."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from autovision.errors import ModelError
from autovision.workspace import Workspace, packages
from tests._s3 import s3_server
from tests.search.conftest import TINY_SPACE

pytestmark = pytest.mark.slow  # trains a small CNN twice per module (seconds)
LABELS = ("red", "blue")


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def trained(s3, tmp_path_factory):
    """Train in workspace A (SQLite file outside it, blobs in the bucket); A's folder is
    deleted afterwards. Returns (db_url, blob_url, model_id, A's predictions, images)."""
    from PIL import Image

    from autovision.data.importer import import_dataset
    from autovision.predict.pipeline import predict_batch
    from autovision.search.run import train
    from tests.conftest import _pattern

    base = tmp_path_factory.mktemp("s3ws")
    db_url = f"sqlite:///{base / 'shared.db'}"
    blob_url = s3.url("team", "blobs")
    images = base / "images"
    for li, label in enumerate(LABELS):
        (images / label).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(_pattern(li * 2, 16, li * 100 + i)).save(images / label / f"{i}.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(TINY_SPACE))
        mp.setenv("AUTOVISION_THREADS", "1")
        mp.setenv("HOME", str(base / "home"))
        ws_a = Workspace(base / "A", db_url=db_url, blob_url=blob_url)
        import_dataset(ws_a, "colours", images)
        result = train(ws_a, "colours", trials=1)
        out = base / "a-preds.jsonl"
        predict_batch(result.model, images, out, workspace=ws_a, workers=1)
        ws_a.engine.dispose()
    shutil.rmtree(base / "A")
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    return {
        "db_url": db_url,
        "blob_url": blob_url,
        "model": result.model,
        "answers": answers,
        "images": images,
        "base": base,
    }


def _machine_b(trained, name: str = "B") -> Workspace:
    root = trained["base"] / name
    assert not root.exists()
    return Workspace(root, db_url=trained["db_url"], blob_url=trained["blob_url"])


def _keys(s3, prefix: str) -> set[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_everything_is_in_the_bucket(s3, trained) -> None:
    model = trained["model"]
    keys = _keys(s3, "team/blobs/")
    package = {k.rsplit("/", 1)[-1] for k in keys if k.startswith(f"team/blobs/models/{model}/")}
    assert {"model.onnx", "weights.safetensors", "model.json", "manifest.json"} <= package
    assert "model_card.json" in package
    images = [k for k in keys if len(k.rsplit("/", 1)[-1]) == 64]
    assert len(images) == 16  # every dataset image, content-addressed


def test_a_fresh_machine_predicts(trained, tmp_path) -> None:
    from autovision.predict.pipeline import predict_batch

    ws = _machine_b(trained)
    path = ws.model_path(trained["model"])
    assert path == ws.cache_dir / "packages" / trained["model"]
    assert (path / "model.onnx").is_file()
    out = tmp_path / "b-preds.jsonl"
    predict_batch(trained["model"], trained["images"], out, workspace=ws, workers=1)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["prediction"] for g in got] == [a["prediction"] for a in trained["answers"]]
    assert ws.dataset("colours").items and ws.load_image(ws.dataset("colours").items[0])


def test_a_fresh_machine_serves_and_logs_into_the_bucket(s3, trained, image_bytes) -> None:
    from fastapi.testclient import TestClient

    from autovision.monitoring import log as plog
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    ws = _machine_b(trained, "serve")
    model = trained["model"]
    data = image_bytes(0, 24, 5)
    settings = ServerSettings(key_cache_ttl_s=0.0, allowed_hosts=["testserver"])
    with TestClient(create_app(ws, [model], settings=settings)) as client:
        body = {"instances": [{"content": base64.b64encode(data).decode()}]}
        r = client.post(f"/v1/models/{model}:predict", json=body)
        assert r.status_code == 200, r.text
        client.app.state.server.plog.flush()
    logged = plog.query(ws, model_id=model)
    assert logged and ws.blobs.get(logged[-1]["image_sha256"]) == data
    sha = logged[-1]["image_sha256"]
    assert f"team/blobs/{sha[:2]}/{sha}" in _keys(s3, "team/blobs/")
    assert not (ws.root / "blobs").exists()


def test_evaluation_results_reach_the_bucket(s3, trained) -> None:
    from autovision.evaluation.api import evaluate

    ws = _machine_b(trained, "eval")
    report = s3.url("reports", "eval.html")
    result = evaluate(ws, trained["model"], split="test", report=report)
    assert result["report"] == report
    html = s3.client().get_object(Bucket=s3.bucket, Key="reports/eval.html")["Body"].read()
    assert html.startswith(b"<!doctype html>") or b"<html" in html[:500].lower()
    key = f"team/blobs/models/{trained['model']}/metrics.json"
    assert key in _keys(s3, key)
    manifest = json.loads(
        s3.client()
        .get_object(Bucket=s3.bucket, Key=f"team/blobs/models/{trained['model']}/manifest.json")[
            "Body"
        ]
        .read()
    )
    assert "metrics.json" in manifest["files"]
    # a third machine gets the evaluated package, metrics included
    other = _machine_b(trained, "third")
    assert (other.model_path(trained["model"]) / "metrics.json").is_file()


def test_a_changed_object_in_the_bucket_is_refused(s3, trained) -> None:
    ws = _machine_b(trained, "tamper")
    key = f"team/blobs/models/{trained['model']}/model.json"
    client = s3.client()
    original = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    client.put_object(Bucket=s3.bucket, Key=key, Body=original + b" ")
    try:
        with pytest.raises(ModelError, match="does not match the package manifest"):
            ws.model_path(trained["model"])
        assert not packages.cache_folder(ws, trained["model"]).exists()
    finally:
        client.put_object(Bucket=s3.bucket, Key=key, Body=original)


def test_a_model_missing_everywhere_names_the_url(trained) -> None:
    ws = _machine_b(trained, "missing")
    ws.register_model(
        "m-ghost",
        dataset="colours",
        dataset_version=1,
        task="single-label",
        path=ws.models_dir / "m-ghost",
    )
    with pytest.raises(ModelError, match=r"m-ghost.*s3://.*/models/m-ghost/"):
        ws.model_path("m-ghost")


def test_a_fresh_machine_trains(s3, trained, monkeypatch) -> None:
    from autovision.search.run import train

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(TINY_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    ws = _machine_b(trained, "trainer")
    result = train(ws, "colours", trials=1, base_model=trained["model"])
    assert result.version > 1
    assert (ws.cache_dir / "packages" / trained["model"] / "model.onnx").is_file()  # the base
    keys = _keys(s3, f"team/blobs/models/{result.model}/")
    assert f"team/blobs/models/{result.model}/model.onnx" in keys
