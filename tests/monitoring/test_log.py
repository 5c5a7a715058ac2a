"""The prediction log: what the server records, sampling, the full-queue drop, retention."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from autovision.monitoring import log as plog
from autovision.security.keys import create_key

from .conftest import LABELS, MODEL

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

PREDICT = f"/v1/models/{MODEL}:predict"


def _body(*payloads: bytes) -> dict:
    return {"instances": [{"content": base64.b64encode(p).decode()} for p in payloads]}


def _rows(ws, **kw) -> list[dict]:
    return plog.query(ws, model_id=MODEL, **kw)


def test_predictions_are_logged_with_every_field(make_client, served_ws, image_bytes) -> None:
    key_id, key = create_key(served_ws, "predict")
    client = make_client()
    server = client.app.state.server
    images = [image_bytes(0, 40, 1), image_bytes(1, 48, 2, "JPEG")]
    r = client.post(PREDICT, json=_body(*images), headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    server.plog.flush()

    rows = sorted(_rows(served_ws), key=lambda r: r["instance"])
    assert len(rows) == 2
    pkg = server.models[MODEL].package
    for i, (row, data) in enumerate(zip(rows, images, strict=True)):
        assert row["id"].startswith("p-") and row["instance"] == i
        assert row["request_id"] == r.headers["x-request-id"]
        assert row["key_id"] == key_id and row["route"] == "predict"
        assert row["model_id"] == MODEL
        assert datetime.fromisoformat(row["time"]) > datetime.now(UTC) - timedelta(minutes=1)
        probs = np.array(row["probs"])
        assert probs.shape == (3,) and probs.sum() == pytest.approx(1.0, abs=1e-4)
        top = int(probs.argmax())
        assert row["top_label"] == LABELS[top] and row["labels"] == [LABELS[top]]
        assert row["confidence"] == pytest.approx(probs.max(), abs=1e-5)
        assert row["margin"] == pytest.approx(probs.max() - np.sort(probs)[-2], abs=1e-5)
        assert row["latency_ms"] > 0
        assert (row["width"], row["height"]) == ((40, 40), (48, 48))[i]
        assert {"brightness", "contrast", "sharpness", "entropy"} <= set(row["stats"])
        assert len(row["embedding"]) == 128  # the compact CNN's pooled features
        assert row["image_sha256"] == hashlib.sha256(data).hexdigest()
        assert served_ws.blobs.get(row["image_sha256"]) == data
        assert row["review_status"] is None and row["feedback"] is None
    # the same answer as the response: the log holds what the client got
    confidences = r.json()["predictions"][0]["confidences"]
    assert max(rows[0]["probs"]) == pytest.approx(confidences[0], abs=1e-5)
    # the embedding is the model's, from the same run
    from autovision.data.decode import load_rgb
    from autovision.models.preprocess import preprocess

    x = preprocess([load_rgb(images[0])], pkg.preprocessing)
    _, emb = pkg.predict_with_embeddings(x)
    np.testing.assert_allclose(rows[0]["embedding"], emb[0], atol=1e-3)
    # the input statistics are the data report's
    assert rows[0]["stats"] == pytest.approx(plog.input_stats(load_rgb(images[0])), abs=1e-6)


def test_v2_and_upload_routes_are_logged(make_client, served_ws, image_bytes) -> None:
    client = make_client()
    data = image_bytes(2, 32, 3)
    r = client.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(data).decode()],
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    pixels = np.full((1, 20, 20, 3), 120, dtype=np.uint8)
    r = client.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": list(pixels.shape),
                    "data": pixels.ravel().tolist(),
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/models/{MODEL}:upload", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 200, r.text
    client.app.state.server.plog.flush()
    rows = _rows(served_ws)
    assert sorted(r["route"] for r in rows) == ["upload", "v2", "v2"]
    raw = next(r for r in rows if r["width"] == 20)
    assert raw["stats"]["brightness"] == pytest.approx(120 / 255, abs=0.01)
    assert raw["image_sha256"] is not None  # raw pixels kept as PNG


def test_log_rate_samples_requests(make_client, served_ws, image_bytes) -> None:
    client = make_client(log_rate=0.5)
    server = client.app.state.server
    server.plog._rng = random.Random(7)
    draws = random.Random(7)
    expected = sum(draws.random() < 0.5 for _ in range(20))
    for i in range(20):
        assert client.post(PREDICT, json=_body(image_bytes(0, 32, i))).status_code == 200
    server.plog.flush()
    assert 0 < expected < 20 and len(_rows(served_ws)) == expected


def test_no_log_and_no_store_images(make_client, served_ws, image_bytes) -> None:
    client = make_client(log_predictions=False)
    assert client.app.state.server.plog is None
    assert client.post(PREDICT, json=_body(image_bytes(0))).status_code == 200
    assert _rows(served_ws) == []
    assert client.app.state.server.models[MODEL].embeds is False

    client = make_client(log_store_images=False)
    data = image_bytes(1, 32, 9)
    assert client.post(PREDICT, json=_body(data)).status_code == 200
    client.app.state.server.plog.flush()
    (row,) = _rows(served_ws)
    assert row["image_sha256"] is None and row["embedding"] and row["stats"]
    assert not served_ws.blobs.exists(hashlib.sha256(data).hexdigest())


def test_a_full_queue_drops_and_counts_and_responses_stay_fast(
    make_client, served_ws, image_bytes, caplog
) -> None:
    client = make_client(log_queue_limit=1)
    server = client.app.state.server
    release = threading.Event()
    entered = threading.Event()
    real_write = server.plog.write

    def stalled(entries):
        entered.set()
        release.wait(30)
        real_write(entries)

    server.plog.write = stalled
    body = _body(image_bytes(0, 32, 1))
    assert client.post(PREDICT, json=body).status_code == 200
    assert entered.wait(5), "the writer took the first record"
    latencies = []
    for _ in range(6):
        t0 = time.perf_counter()
        assert client.post(PREDICT, json=body).status_code == 200
        latencies.append(time.perf_counter() - t0)
    assert max(latencies) < 1.0, latencies  # never waiting for the stalled writer
    assert server.plog.dropped == 5  # one queued, five dropped
    metrics = server.metrics.render()
    assert "autovision_prediction_log_dropped_total 5" in metrics
    assert any("prediction log queue full" in r.getMessage() for r in caplog.records)
    release.set()
    server.plog.flush()
    assert len(_rows(served_ws)) == 2


def _old_entry(when: datetime, image: bytes | None, name: str = "toy") -> plog.Entry:
    cap = plog.Capture()
    from PIL import Image

    cap.add(image, (8, 8), Image.new("RGB", (8, 8)))
    return plog.Entry(
        time=when,
        request_id="r",
        key_id=None,
        name=name,
        model_id=MODEL,
        version=1,
        route="predict",
        labels=list(LABELS),
        decide=lambda p: [[int(i)] for i in p.argmax(1)],
        probs=np.array([[0.7, 0.2, 0.1]], dtype=np.float32),
        embedding=None,
        latency_ms=1.0,
        capture=cap,
    )


def test_retention_purge_deletes_old_records_keeps_dataset_blobs(served_ws, png_image) -> None:
    from autovision.data.dataset import Item

    ws = served_ws
    logger = plog.PredictionLogger(ws)
    now = datetime.now(UTC)
    old_only, old_shared, recent = png_image(1), png_image(2), png_image(3)
    shared_sha = hashlib.sha256(old_shared).hexdigest()
    logger.write([_old_entry(now - timedelta(days=40), old_only)])
    logger.write([_old_entry(now - timedelta(days=31), old_shared)])
    logger.write([_old_entry(now - timedelta(hours=1), recent)])
    item = Item(1, shared_sha, "feedback", ("cat",), "train", 8, 8, "PNG")
    ws.create_version("pets", [item], multi_label=False)
    logger.close()

    result = plog.purge(ws, "30d")
    assert result["records"] == 2 and result["images_deleted"] == 1
    assert result["images_kept"] == 1
    assert not ws.blobs.exists(hashlib.sha256(old_only).hexdigest())
    assert ws.blobs.get(shared_sha) == old_shared  # a dataset version still uses it
    (left,) = plog.query(ws, "toy")
    assert left["image_sha256"] == hashlib.sha256(recent).hexdigest()

    from autovision.security.audit import read_audit

    events = [e for e in read_audit(ws.audit_log_path) if e["action"] == "logs.purge"]
    assert events and events[-1]["records"] == 2


def test_the_server_purges_at_start_up(make_client, served_ws, png_image) -> None:
    logger = plog.PredictionLogger(served_ws)
    logger.write([_old_entry(datetime.now(UTC) - timedelta(days=3), png_image(4))])
    logger.close()
    client = make_client(retention="2d")
    server = client.app.state.server
    deadline = time.monotonic() + 5
    while server.retention.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert plog.query(served_ws, "toy") == []


def test_parse_age_and_bad_durations() -> None:
    assert plog.parse_age("30d") == timedelta(days=30)
    assert plog.parse_age("1h30m") == timedelta(minutes=90)
    with pytest.raises(plog.LogError, match="invalid duration 'soon'"):
        plog.parse_age("soon")


@pytest.fixture
def png_image():
    import io

    from PIL import Image

    def make(seed: int) -> bytes:
        rng = np.random.default_rng(seed)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    return make


def test_logged_statistics_of_a_large_jpeg_match_the_data_report(
    make_client, served_ws, image_bytes
) -> None:
    """The served decode drafts JPEGs down to twice the model's input (64 px here); with the
    log on it keeps at least the 128 px the statistics are measured on."""
    from autovision.data.decode import load_rgb

    client = make_client()
    data = image_bytes(1, 512, 5, "JPEG")
    assert client.post(PREDICT, json=_body(data)).status_code == 200
    client.app.state.server.plog.flush()
    (row,) = _rows(served_ws)
    expected = plog.input_stats(load_rgb(data))
    assert (row["width"], row["height"]) == (512, 512)
    for key in ("brightness", "contrast", "sharpness", "entropy"):
        assert row["stats"][key] == pytest.approx(expected[key], rel=0.1), key


def test_embeddings_are_stored_as_float16_and_read_back_as_lists():
    import numpy as np

    from autovision.monitoring.log import decode_embedding, encode_embedding

    v = np.random.default_rng(0).standard_normal(1280).astype(np.float32)
    stored = encode_embedding(v)
    assert stored.startswith("f16:") and len(stored) < 4000  # a JSON list is ~11 KB
    back = decode_embedding(stored)
    assert isinstance(back, list) and len(back) == 1280
    np.testing.assert_allclose(back, v, rtol=1e-3, atol=1e-4)
    assert decode_embedding([0.5, 1.0]) == [0.5, 1.0] and decode_embedding(None) is None
