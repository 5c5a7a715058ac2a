"""Readiness (issue 11): ready means every model the server was asked to serve is loaded; a
model that failed to load answers 503 on its own routes, and the server stays up."""

from __future__ import annotations

import shutil

import pytest

from .conftest import MODEL, TEST_HOST

URL = f"/v1/models/{MODEL}:predict"


def _app_client(ws, model_ids=None):
    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    settings = ServerSettings(allowed_hosts=[TEST_HOST], key_cache_ttl_s=0)
    return TestClient(create_app(ws, model_ids, settings=settings))


@pytest.fixture
def broken_ws(workspace, serving_package, tmp_path):
    """``m-test`` registered, its package gone (the finding's "package is missing")."""
    gone = tmp_path / "gone"
    shutil.copytree(serving_package, gone)
    workspace.register_model(
        MODEL, dataset="toy", dataset_version=1, task="single-label", path=gone
    )
    shutil.rmtree(gone)
    return workspace


def test_not_ready_with_nothing_to_serve(broken_ws):
    with _app_client(broken_ws) as client:  # every model (the default)
        r = client.get("/v2/health/ready")
        assert r.status_code == 503, r.text  # was 200 {"ready": true, "models": 0}
        assert r.json() == {"ready": False, "models": 0, "failed": 1}
        r = client.get(f"/v2/models/{MODEL}/ready")
        assert r.status_code == 503 and r.json()["code"] == "model_not_loaded"
        assert client.get("/v2/models/other/ready").status_code == 404
        r = client.post(URL, json={"instances": [{"content": "AAAA"}]})
        assert r.status_code == 503
        assert client.get("/v2/health/live").status_code == 200


def test_an_explicit_model_that_fails_keeps_the_server_up_unready(broken_ws):
    with _app_client(broken_ws, [MODEL]) as client:  # this raised at start-up
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 503


def test_one_explicit_model_failing_makes_the_server_unready(served_ws, tmp_path, serving_package):
    gone = tmp_path / "gone"
    shutil.copytree(serving_package, gone)
    served_ws.register_model(
        "m-gone", dataset="toy", dataset_version=1, task="single-label", path=gone
    )
    shutil.rmtree(gone)
    with _app_client(served_ws, [MODEL, "m-gone"]) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get(f"/v2/models/{MODEL}/ready").status_code == 200
        assert client.get("/v2/models/m-gone/ready").status_code == 503
    with _app_client(served_ws) as client:  # every model: the loaded one is served
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/m-gone/ready").status_code == 503
