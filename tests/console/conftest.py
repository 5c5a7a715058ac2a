"""Console fixtures: an app over a fresh workspace, logged-in clients of each role, and
zips of generated class folders."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from ._helpers import BASE, PASSWORD, csrf_of, login


@pytest.fixture
def make_app(workspace):
    from autovision.console.app import create_app

    def build(**kwargs):
        return create_app(workspace, **kwargs)

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client_as(app, workspace) -> Callable[[str], tuple[TestClient, str]]:
    """``client_as("trainer")`` -> (a client logged in as a user of that role, its CSRF)."""
    from autovision.console.auth import create_user

    def make(role: str) -> tuple[TestClient, str]:
        client = TestClient(app, base_url=BASE)
        name = f"{role}-user"
        if not any(u["name"] == name for u in _users(workspace)):
            create_user(workspace, name, role, PASSWORD)
        response = login(client, name)
        assert response.status_code == 303, response.text
        return client, csrf_of(client.get("/datasets").text)

    return make


def _users(ws):
    from autovision.console.auth import list_users

    return list_users(ws)


@pytest.fixture
def class_zip(image_folder, tmp_path) -> Callable[..., bytes]:
    """``class_zip(labels=("cat", "dog"), per_label=6)`` -> zip bytes of LABEL/NNN.png."""

    def build(labels=("cat", "dog"), per_label: int = 6, extra: dict[str, bytes] | None = None):
        root = image_folder(labels=tuple(labels), per_label=per_label)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for path in sorted(root.rglob("*.png")):
                zf.write(path, path.relative_to(root).as_posix())
            for name, data in (extra or {}).items():
                zf.writestr(name, data)
        return buf.getvalue()

    return build
