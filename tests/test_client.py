"""autovision.Client against a fake server (httpx.MockTransport) and the real app."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

import autovision
from autovision.client import Client, ClientConnectionError, ClientError, Prediction

URL = "http://test.invalid"


def _prediction(n: int) -> dict:
    return {"ids": ["1", "0"], "displayNames": ["dog", "cat"], "confidences": [0.75 - n, 0.25]}


def _ok(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    preds = [_prediction(0) for _ in body["instances"]]
    return httpx.Response(200, json={"predictions": preds, "deployedModelId": "m1"})


def _client(handler: Callable[[httpx.Request], httpx.Response], **kwargs) -> tuple[Client, list]:
    sleeps: list[float] = []
    client = Client(URL, transport=httpx.MockTransport(handler), **kwargs)
    client._sleep = sleeps.append
    return client, sleeps


def test_predict_sends_vertex_body_and_parses(tmp_path: Path, image_bytes) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _ok(request)

    path = tmp_path / "a.png"
    path.write_bytes(image_bytes(0, 16, 1))
    pil = Image.new("RGB", (8, 6), (1, 2, 3))
    client, _ = _client(handler, api_key="sekret", model="m1")
    preds = client.predict(
        [path, str(path), image_bytes(1, 16, 2, "JPEG"), pil],
        confidence_threshold=0.2,
        max_predictions=3,
    )

    assert autovision.Client is Client
    assert [p.label for p in preds] == ["dog"] * 4
    assert preds[0] == Prediction(["1", "0"], ["dog", "cat"], [0.75, 0.25])
    assert preds[0].confidence == 0.75 and preds[0].scores == {"dog": 0.75, "cat": 0.25}
    [request] = seen
    assert request.method == "POST" and request.url.path == "/v1/models/m1:predict"
    assert request.headers["authorization"] == "Bearer sekret"
    body = json.loads(request.content)
    assert body["parameters"] == {"confidenceThreshold": 0.2, "maxPredictions": 3}
    decoded = [base64.b64decode(i["content"]) for i in body["instances"]]
    assert decoded[0] == decoded[1] == path.read_bytes()
    assert Image.open(io.BytesIO(decoded[2])).format == "JPEG"
    round_trip = Image.open(io.BytesIO(decoded[3]))
    assert round_trip.size == (8, 6) and round_trip.getpixel((0, 0)) == (1, 2, 3)


def test_single_image_and_large_lists_are_split(image_bytes) -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)["instances"]))
        return _ok(request)

    client, _ = _client(handler, model="m1", batch_size=4)
    assert len(client.predict(image_bytes())) == 1
    assert client.predict([]) == []
    assert len(client.predict([image_bytes()] * 10, model="other")) == 10
    assert sizes == [1, 4, 4, 2]


def test_429_then_200_is_retried_with_backoff(image_bytes) -> None:
    replies = iter([429, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(replies)
        if status == 429:
            return httpx.Response(429, json={"error": {"code": "too_many", "message": "busy"}})
        return _ok(request)

    client, sleeps = _client(handler, model="m1", backoff=0.5)
    assert client.predict(image_bytes())[0].label == "dog"
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 0.55 and 1.0 <= sleeps[1] <= 1.1


def test_503_honours_retry_after(image_bytes) -> None:
    replies = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(replies) == 503:
            return httpx.Response(
                503,
                headers={"Retry-After": "3"},
                json={"error": {"code": "overloaded", "message": "queue full"}},
            )
        return _ok(request)

    client, sleeps = _client(handler, model="m1")
    client.predict(image_bytes())
    assert sleeps == [3.0]


def test_retries_run_out_then_error_has_status_and_code(image_bytes) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503, json={"error": {"code": "overloaded", "message": "full"}})

    client, sleeps = _client(handler, model="m1", retries=2)
    with pytest.raises(ClientError) as info:
        client.predict(image_bytes())
    assert len(calls) == 3 and len(sleeps) == 2
    assert info.value.status_code == 503 and info.value.code == "overloaded"
    assert "after 3 attempts" in str(info.value)


def test_400_raises_client_error_without_retry(image_bytes) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        error = {"code": "unsupported_format", "message": "instance 0: not an image"}
        return httpx.Response(400, json={"error": error})

    client, sleeps = _client(handler, model="m1")
    with pytest.raises(ClientError) as info:
        client.predict(b"not an image")
    err = info.value
    assert (err.status_code, err.code) == (400, "unsupported_format")
    assert err.server_message == "instance 0: not an image"
    assert "HTTP 400 unsupported_format: instance 0: not an image" in str(err)
    assert len(calls) == 1 and sleeps == []
    assert isinstance(err, autovision.AutovisionError)


def test_connection_errors_are_retried(image_bytes) -> None:
    replies = iter(["down", "down", "up"])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(replies) == "down":
            raise httpx.ConnectError("connection refused", request=request)
        return _ok(request)

    client, sleeps = _client(handler, model="m1")
    assert client.predict(image_bytes())[0].label == "dog"
    assert len(sleeps) == 2

    def always_down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = _client(always_down, model="m1", retries=1)
    with pytest.raises(ClientConnectionError, match="after 2 attempts"):
        client.predict(image_bytes())
    assert client.health() is False


def test_health_models_and_default_model(image_bytes) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/v2/health/ready":
            return httpx.Response(200)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"models": [{"id": "only", "labels": ["a"]}]})
        return _ok(request)

    client, _ = _client(handler)
    assert client.health() is True
    assert client.models() == [{"id": "only", "labels": ["a"]}]
    client.predict(image_bytes())
    assert paths[-1] == "/v1/models/only:predict"


# ---- against the real server (create_app + uvicorn on loopback) ---------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    """``autovision serve``'s app with a tiny compact-CNN model, on a free loopback port."""
    import socket
    import threading
    import time

    import torch
    import uvicorn

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings
    from autovision.workspace import Workspace

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("client-live")
    ws = Workspace(root / "ws")
    cfg = get_backbone_cfg("compact_cnn")
    path = save_package(
        ws.models_dir / "m-client",
        create_model("compact_cnn", num_classes=3, pretrained=False),
        labels=["red", "green", "blue"],
        task="single-label",
        backbone="compact_cnn",
        preprocessing=Preprocessing(cfg.input_size, cfg.mean, cfg.std),
    )
    ws.register_model("m-client", dataset="d", dataset_version=1, task="single-label", path=path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ws, ["m-client"], settings=ServerSettings(key_cache_ttl_s=0)),
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}", ws
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_against_the_real_server(live_server, tmp_path: Path, image_bytes) -> None:
    from autovision.security.keys import create_key

    url, ws = live_server
    png = tmp_path / "x.png"
    png.write_bytes(image_bytes(0, 32, 1))
    with Client(url, retries=1, backoff=0.01) as client:
        assert client.health() is True
        assert [m["id"] for m in client.models()] == ["m-client"]
        preds = client.predict([png, image_bytes(1, 40, 2, "JPEG"), Image.new("RGB", (9, 9))])
        assert len(preds) == 3
        for p in preds:
            assert sorted(p.display_names) == ["blue", "green", "red"]
            assert p.confidences == sorted(p.confidences, reverse=True)
            assert abs(sum(p.confidences) - 1) < 1e-3
        [top] = client.predict(png, max_predictions=1)
        assert top.ids == preds[0].ids[:1] and top.label == preds[0].label
        assert client.model_info()["labels"] == ["red", "green", "blue"]
        with pytest.raises(ClientError) as info:
            client.predict(b"this is text, not an image")
        assert info.value.status_code == 415 and info.value.code
        with pytest.raises(ClientError) as info:
            client.predict(png, model="no-such-model")
        assert info.value.status_code == 404

    _, key = create_key(ws, "predict")
    with Client(url, model="m-client", retries=0) as anonymous:
        with pytest.raises(ClientError) as info:
            anonymous.predict(png)
        assert info.value.status_code == 401
    with Client(url, key, retries=0) as client:
        assert client.health() is True
        assert [m["id"] for m in client.models()] == ["m-client"]  # GET /v1/models
        assert client.predict(png)[0].label == preds[0].label  # the only model
        assert client.predict(png, model="m-client")[0].label == preds[0].label
