"""A tiny model package (compact CNN, 3 labels, random weights) built once per session,
and ``make_client(**settings)`` for a TestClient whose lifespan has loaded it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

LABELS = ("cat", "dog", "fox")
MODEL = "m-test"
TEST_HOST = "testserver"  # what TestClient sends as Host


@pytest.fixture(autouse=True)
def _no_serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("AUTOVISION_SERVE_"):
            monkeypatch.delenv(var)


@pytest.fixture(scope="session")
def serving_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        tmp_path_factory.mktemp("serving") / MODEL,
        model,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


@pytest.fixture
def served_ws(workspace, serving_package: Path):
    workspace.register_model(
        MODEL, dataset="toy", dataset_version=1, task="single-label", path=serving_package
    )
    return workspace


@pytest.fixture
def make_client(served_ws) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings)``: settings default to no key cache, for exact tests, and
    accept TestClient's ``Host: testserver``."""
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    opened: list[TestClient] = []

    def make(**overrides) -> TestClient:
        settings = ServerSettings(
            **{"key_cache_ttl_s": 0.0, "allowed_hosts": [TEST_HOST], **overrides}
        )
        client = TestClient(create_app(served_ws, [MODEL], settings=settings))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def server(client: TestClient):
    """The running app's :class:`ServerState`."""
    return client.app.state.server


@pytest.fixture
def b64_image(image_bytes) -> Callable[..., str]:
    def make(label_index: int = 0, size: int = 40, seed: int = 0, fmt: str = "PNG") -> str:
        return base64.b64encode(image_bytes(label_index, size, seed, fmt)).decode()

    return make


def png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()
