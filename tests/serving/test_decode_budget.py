"""Bounded decoding cost: decoded-bytes budgets per image and per request checked from the
headers before any decoding, JPEG draft decoding, and timed-out work that stops."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from autovision.models.preprocess import Preprocessing, resize_image
from autovision.serving import inference

from .conftest import MODEL
from .fuzzing import hostile_png
from .test_server_limits import assert_error

URL = f"/v1/models/{MODEL}:predict"


def _instances(*payloads: bytes) -> dict:
    return {"instances": [{"content": base64.b64encode(p).decode()} for p in payloads]}


@pytest.fixture
def count_decodes(monkeypatch):
    calls: list[int] = []
    real = inference.decode_opened

    def counting(opened):
        calls.append(1)
        return real(opened)

    monkeypatch.setattr(inference, "decode_opened", counting)
    return calls


def test_hostile_request_is_refused_before_decoding(client, count_decodes):
    png = hostile_png()
    assert len(png) < 110_000
    body = _instances(*[png] * 64)  # 64 x 79 MB decoded, in a 7 MB body
    t0 = time.perf_counter()
    err = assert_error(client.post(URL, json=body), 413, "decode_budget_exceeded")
    assert time.perf_counter() - t0 < 5
    assert err["message"].startswith("instance 5: the first 6 images decode to 476280000 bytes")
    assert "400000000 bytes per request" in err["message"]
    assert count_decodes == []  # refused from the headers alone
    assert client.post(URL, json=_instances(hostile_png(300, 300))).status_code == 200


def test_per_image_budget_names_the_instance(make_client, image_bytes, count_decodes):
    client = make_client(max_decoded_bytes_per_image=100_000)
    small, large = image_bytes(0, 40), image_bytes(1, 200)  # 4 800 and 120 000 bytes
    err = assert_error(
        client.post(URL, json=_instances(small, large)), 413, "decode_budget_exceeded"
    )
    assert err["message"] == (
        "instance 1: 200x200 RGB decodes to 120000 bytes, over the limit of 100000 bytes per image"
    )
    assert count_decodes == []
    assert client.post(URL, json=_instances(small)).status_code == 200


def test_per_request_budget_sums_every_header_first(make_client, image_bytes, count_decodes):
    client = make_client(max_decoded_bytes_per_request=10_000)
    img = image_bytes(0, 40)  # 4 800 bytes decoded
    assert client.post(URL, json=_instances(img, img)).status_code == 200
    count_decodes.clear()
    err = assert_error(
        client.post(URL, json=_instances(img, img, img)), 413, "decode_budget_exceeded"
    )
    assert "instance 2" in err["message"] and "14400" in err["message"]
    assert count_decodes == []


def test_jpeg_is_drafted_to_twice_the_input_size(make_client, count_decodes):
    client = make_client(max_decoded_bytes_per_image=1_000_000)
    img = Image.new("RGB", (1600, 1200), (200, 30, 30))  # 5.8 MB decoded at full size
    jpeg, png = io.BytesIO(), io.BytesIO()
    img.save(jpeg, "JPEG")
    img.save(png, "PNG")
    assert_error(client.post(URL, json=_instances(png.getvalue())), 413, "decode_budget_exceeded")
    r = client.post(URL, json=_instances(jpeg.getvalue()))  # input 32: drafted 1/8, 200x150
    assert r.status_code == 200, r.text
    assert count_decodes == [1]


@pytest.mark.parametrize("rule", ["squash", "pad", "center_crop"])
def test_jpeg_draft_keeps_the_model_input_nearly_identical(rule):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1200, 0:1600].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 97 + c) * np.cos(yy / 61 - c) for c in range(3)], -1)
    img += 30 * np.sin(xx / 7)[..., None] * (yy > 600)[..., None] + rng.normal(0, 8, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    spec = Preprocessing(224, (0.5,) * 3, (0.5,) * 3, resize=rule)
    full = resize_image(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), spec)
    drafted = inference.decode_to_pixels([buf.getvalue()], spec, 40_000_000)[0]
    diff = np.abs(full.astype(int) - drafted.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5  # measured: max 2, mean 0.13-0.28


def _wait(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_timed_out_work_stops_and_stays_admitted(make_client, image_bytes, monkeypatch):
    client = make_client(request_timeout_s=0.3, preprocess_threads=1)
    batcher = client.app.state.server.models[MODEL].batcher
    runs: list[int] = []
    real_run = batcher._run
    monkeypatch.setattr(batcher, "_run", lambda x: runs.append(len(x)) or real_run(x))
    monkeypatch.setattr(batcher, "_run_alone", None)
    gate, decodes = threading.Event(), []
    real = inference.decode_opened

    def slow(opened):  # the first image hangs until the test lets it go
        decodes.append(1)
        if len(decodes) == 1:
            gate.wait(10)
        return real(opened)

    monkeypatch.setattr(inference, "decode_opened", slow)
    good = image_bytes(0, 40)
    assert_error(client.post(URL, json=_instances(good, good, good)), 504, "timeout")
    assert batcher.pending == 3  # the preprocessing thread still runs: its images count
    gate.set()
    _wait(lambda: batcher.pending == 0)
    assert len(decodes) == 1  # stopped at the next image boundary
    assert runs == []  # no batch for the abandoned request
    r = client.post(URL, json=_instances(good))
    assert r.status_code == 200, r.text
    assert runs == [1]


def test_a_timed_out_request_does_not_time_out_the_next(make_client, image_bytes, monkeypatch):
    """The finding: one preprocessing thread, a request of 10 slow images times out; the next
    valid request, sent at once, used to wait behind the abandoned decode and time out too."""
    client = make_client(request_timeout_s=1.0, preprocess_threads=1)
    real = inference.decode_opened

    def slow(opened):  # 0.3 s an image: the abandoned request would hold the thread 3 s
        time.sleep(0.3)
        return real(opened)

    monkeypatch.setattr(inference, "decode_opened", slow)
    good = image_bytes(0, 40)
    assert_error(client.post(URL, json=_instances(*[good] * 10)), 504, "timeout")
    r = client.post(URL, json=_instances(good))  # waits <= 0.3 s for the thread, then 0.3 s
    assert r.status_code == 200, r.text


def test_job_stops_past_its_deadline():
    job = inference.Job(deadline=time.monotonic() - 1)
    with pytest.raises(inference.RequestAbandoned):
        job.check()
    job = inference.Job()
    job.check()
    job.abandon()
    assert job.abandoned


def test_ico_is_refused_by_the_server(client, make_image):
    buf = io.BytesIO()
    make_image(0, 32).save(buf, "ICO")
    err = assert_error(client.post(URL, json=_instances(buf.getvalue())), 415, "unsupported_format")
    assert "JPEG, PNG, WEBP, BMP, GIF, TIFF" in err["message"]
