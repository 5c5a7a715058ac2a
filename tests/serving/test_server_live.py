"""A real server on loopback (uvicorn in a thread): tritonclient with its default binary
data, a streamed body over the limit, and TLS."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from autovision.security import create_key

from .conftest import LABELS, MODEL


@contextmanager
def running(app, **config) -> Iterator[int]:
    """Serve ``app`` on a free loopback port in a thread; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    cfg = {"log_level": "warning", "access_log": False, "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, **cfg))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture
def live(served_ws) -> Iterator[int]:
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings(key_cache_ttl_s=0))
    with running(app) as port:
        yield port


def test_tritonclient_binary_infer(live, served_ws, image_bytes):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from autovision.data.decode import load_rgb
    from autovision.models.package import ModelPackage

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{live}")
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL)
        meta = client.get_model_metadata(MODEL)
        assert [i["name"] for i in meta["inputs"]] == ["image", "pixels"]

        raw = [image_bytes(0, 40, fmt="JPEG"), image_bytes(1, 64), image_bytes(2, 24)]
        inp = httpclient.InferInput("image", [len(raw)], "BYTES")
        inp.set_data_from_numpy(np.array(raw, dtype=object))  # binary by default
        result = client.infer(MODEL, [inp])
        probs = result.as_numpy("probabilities")
        labels = [v.decode() for v in result.as_numpy("label")]
        expected = ModelPackage.load(served_ws.model_path(MODEL)).predict_proba(
            [load_rgb(b) for b in raw]
        )
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        assert labels == [LABELS[i] for i in expected.argmax(1)]
        # errors come back as exceptions, and the server keeps answering
        bad = httpclient.InferInput("image", [1], "BYTES")
        bad.set_data_from_numpy(np.array([b"\x89PNG\r\n\x1a\nnope"], dtype=object))
        with pytest.raises(InferenceServerException) as err:
            client.infer(MODEL, [bad])
        assert err.value.status() == "415"
        assert "unsupported_format" in str(err.value)
        assert "Traceback" not in str(err.value)

        # keys created while the server runs apply at once, headers as tritonclient sends them
        _, key = create_key(served_ws, "predict")
        with pytest.raises(InferenceServerException) as err:
            client.infer(MODEL, [inp])
        assert err.value.status() == "401"
        result = client.infer(MODEL, [inp], headers={"Authorization": f"Bearer {key}"})
        assert result.as_numpy("probabilities").shape == (len(raw), len(LABELS))
        assert client.is_server_live()  # health stays open
    finally:
        client.close()


def test_streamed_body_over_the_limit(served_ws):
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings(max_body_bytes=50_000))

    def chunks():
        for _ in range(200):
            yield b"x" * 10_000

    with running(app) as port, httpx.Client(timeout=20) as http:
        url = f"http://127.0.0.1:{port}"
        try:
            r = http.post(f"{url}/v1/models/{MODEL}:predict", content=chunks())
            assert r.status_code == 413
            assert r.json()["error"]["code"] == "payload_too_large"
        except httpx.HTTPError:
            pass  # the server may close the connection while the client still writes
        assert http.get(f"{url}/v2/health/ready").status_code == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls(served_ws, tmp_path: Path):
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings, uvicorn_kwargs

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = ServerSettings(ssl_certfile=str(cert), ssl_keyfile=str(key))
    kwargs = uvicorn_kwargs(settings)
    tls = {k: kwargs[k] for k in ("ssl_certfile", "ssl_keyfile")}
    with running(create_app(served_ws, [MODEL], settings=settings), **tls) as port:
        r = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=False)
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
