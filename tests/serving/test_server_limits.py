"""Limits and failures: every one answered with a JSON error, and the server stays up."""

from __future__ import annotations

import base64
import io
import struct
import threading
import time
import zlib

import anyio
import pytest
from PIL import Image

from .conftest import MODEL, TEST_HOST

URL = f"/v1/models/{MODEL}:predict"


def _instances(*payloads: bytes) -> dict:
    return {"instances": [{"content": base64.b64encode(p).decode()} for p in payloads]}


def png_header_bomb(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 << 20), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def assert_error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert "Traceback" not in r.text and "/tmp" not in r.text and "/work" not in r.text
    return body["error"]


def test_bad_images_leave_the_server_answering(client, image_bytes):
    bomb = png_header_bomb(100_000, 100_000)
    assert len(bomb) < 10_000
    err = assert_error(client.post(URL, json=_instances(bomb)), 400, "too_many_pixels")
    assert "instance 0" in err["message"]

    fake_png = b"\x89PNG\r\n\x1a\n" + b"this is not a png" * 10
    assert_error(client.post(URL, json=_instances(fake_png)), 415, "unsupported_format")
    assert_error(client.post(URL, json=_instances(b"hello")), 415, "unsupported_format")

    good = image_bytes(0, 40)
    truncated = good[: len(good) // 2]
    assert_error(client.post(URL, json=_instances(truncated)), 400, "unreadable")
    assert_error(client.post(URL, json=_instances(b"")), 400, "empty_file")

    # one bad image fails its request and names the instance
    err = assert_error(client.post(URL, json=_instances(good, b"hello")), 415, "unsupported_format")
    assert "instance 1" in err["message"]

    assert client.post(URL, json=_instances(good)).status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_real_decompression_bomb_under_a_low_pixel_limit(make_client):
    client = make_client(max_pixels=1_000_000)
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 50_000
    assert_error(client.post(URL, json=_instances(buf.getvalue())), 400, "too_many_pixels")


def test_body_limit_from_content_length(make_client, image_bytes):
    client = make_client(max_body_bytes=2_000)
    r = client.post(URL, content=b"x" * 5_000, headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    r = client.post(
        f"/v1/models/{MODEL}:upload", files={"file": ("a.png", b"\0" * 5_000, "image/png")}
    )
    assert_error(r, 413, "payload_too_large")
    assert client.post(URL, json=_instances(image_bytes(0, 8))).status_code == 200


def _raw_request(app, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]):
    """Call the ASGI app directly: a body streamed in chunks with no Content-Length."""
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    incoming.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", TEST_HOST.encode()), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, incoming


@pytest.mark.parametrize("path", [URL, f"/v2/models/{MODEL}/infer", f"/v1/models/{MODEL}:upload"])
def test_body_limit_while_streaming(make_client, path):
    client = make_client(max_body_bytes=10_000)
    chunks = [b"x" * 4_000] * 20
    ctype = b"application/json"
    if path.endswith("upload"):
        ctype = b"multipart/form-data; boundary=xyz"
        chunks[0] = (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n"
        )
    status, body, left = _raw_request(client.app, path, chunks, [(b"content-type", ctype)])
    assert status == 413, body
    assert b"payload_too_large" in body
    assert len(left) > 10  # refused before the body was read whole


def test_too_many_instances(make_client, image_bytes):
    client = make_client(max_instances=2)
    img = image_bytes(0, 8)
    assert_error(client.post(URL, json=_instances(img, img, img)), 400, "too_many_instances")


def _block_model(server, gate: threading.Event):
    pkg = server.models[MODEL].package
    real = pkg.predict_array

    def slow(x, *session):  # the side-by-side path passes its own session
        gate.wait(10)
        return real(x, *session)

    pkg.predict_array = slow


def test_queue_limit_answers_429_with_retry_after(make_client, image_bytes):
    client = make_client(
        queue_limit=1, retry_after_s=3, log_predictions=False
    )  # patches predict_array
    server = client.app.state.server
    gate = threading.Event()
    _block_model(server, gate)
    body = _instances(image_bytes(0, 8))
    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault("r", client.post(URL, json=body)))
    t.start()
    deadline = time.monotonic() + 10
    while server.models[MODEL].batcher.pending == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    r = client.post(URL, json=body)
    assert_error(r, 429, "overloaded")
    assert r.headers["retry-after"] == "3"
    gate.set()
    t.join(10)
    assert first["r"].status_code == 200
    assert client.post(URL, json=body).status_code == 200


def test_request_timeout_answers_504(make_client, image_bytes):
    client = make_client(request_timeout_s=0.3, log_predictions=False)  # patches predict_array
    gate = threading.Event()
    _block_model(client.app.state.server, gate)
    try:
        assert_error(client.post(URL, json=_instances(image_bytes(0, 8))), 504, "timeout")
    finally:
        gate.set()
    assert client.post(URL, json=_instances(image_bytes(0, 8))).status_code == 200


def test_internal_error_is_500_without_details(make_client, image_bytes):
    client = make_client(log_predictions=False)  # patches predict_array
    pkg = client.app.state.server.models[MODEL].package
    real = pkg.predict_array

    def broken(x, *session):
        raise RuntimeError("secret detail in /work/somewhere")

    pkg.predict_array = broken
    r = client.post(URL, json=_instances(image_bytes(0, 8)))
    err = assert_error(r, 500, "internal")
    assert "secret" not in r.text
    assert err["message"] == "internal server error"
    assert r.headers["x-request-id"]
    pkg.predict_array = real
    assert client.post(URL, json=_instances(image_bytes(0, 8))).status_code == 200


def test_unknown_route_and_method(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get(URL), 405, "method_not_allowed")
