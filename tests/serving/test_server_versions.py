"""Serving named models: addressing by NAME / NAME@VERSION / model id, which version
answered, hot switches when a followed alias moves (requests in flight finish on the old
version; a version that fails to load leaves the old one serving), and the admin alias
routes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from autovision.security import create_key, read_audit
from autovision.versions import store

from . import versioned
from .conftest import TEST_HOST
from .versioned import (
    NAME,
    corrupt,
    model_id,
    register_versions,
)

version_packages = versioned.version_packages  # the session fixture


@pytest.fixture
def vws(workspace, version_packages, tmp_path):
    register_versions(workspace, version_packages, tmp_path / "packages")
    store.set_alias(workspace, NAME, 1, "production")
    return workspace


@pytest.fixture
def open_client(vws) -> Iterator[Callable[..., TestClient]]:
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    opened: list[TestClient] = []

    def make(*refs: str, **overrides) -> TestClient:
        # a long poll: tests drive the watcher themselves (watcher.poll()), deterministic
        settings = ServerSettings(
            **{
                "key_cache_ttl_s": 0.0,
                "allowed_hosts": [TEST_HOST],
                "alias_poll_s": 3600,
                **overrides,
            }
        )
        client = TestClient(create_app(vws, list(refs), settings=settings))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _predict(client: TestClient, b64: str, name: str = NAME, **headers: str):
    r = client.post(
        f"/v1/models/{name}:predict", json={"instances": [{"content": b64}]}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r


def _infer(client: TestClient, b64: str, path: str = f"/v2/models/{NAME}/infer"):
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}]}
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r


def test_alias_is_served_under_its_name_and_says_which_version(open_client, b64_image):
    client = open_client(f"{NAME}@production")
    img = b64_image()
    r = _predict(client, img)
    body = r.json()
    assert body["deployedModelId"] == model_id(1) and body["modelVersionId"] == "1"
    assert r.headers["X-Model-Version"] == f"{NAME}@1"
    # the model id of the loaded version, NAME@VERSION (URL-encoded too), NAME@ALIAS
    for name in (model_id(1), f"{NAME}@1", f"{NAME}%401", f"{NAME}@production"):
        assert _predict(client, img, name).json()["modelVersionId"] == "1", name
    # versions not loaded are not served
    for name in (model_id(2), f"{NAME}@2", "other"):
        r = client.post(f"/v1/models/{name}:predict", json={"instances": [{"content": img}]})
        assert r.status_code == 404, name
    r = _infer(client, img)
    assert r.json()["model_name"] == NAME and r.json()["model_version"] == "1"
    assert r.headers["X-Model-Version"] == f"{NAME}@1"
    assert _infer(client, img, f"/v2/models/{NAME}/versions/1/infer").status_code == 200
    assert client.get(f"/v2/models/{NAME}/versions/2/ready").status_code == 404
    meta = client.get(f"/v2/models/{NAME}").json()
    assert meta["name"] == NAME and meta["versions"] == ["1"]
    info = client.get("/v1/models").json()["models"][0]
    assert (info["id"], info["name"], info["version"], info["servedAs"]) == (
        model_id(1),
        NAME,
        1,
        NAME,
    )


def test_a_bare_name_follows_default_and_a_model_id_is_served_as_itself(open_client, b64_image):
    client = open_client(NAME, model_id(3))
    server = client.app.state.server
    assert sorted(server.models) == [model_id(3), NAME]
    assert server.follows == {NAME: (NAME, "default")}
    img = b64_image()
    r = _predict(client, img, model_id(3))
    assert r.json()["modelVersionId"] == "3" and r.headers["X-Model-Version"] == f"{NAME}@3"
    # every loaded version of the name, KServe's route shape
    assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1", "3"]
    r = _infer(client, img, f"/v2/models/{NAME}/versions/3/infer")
    assert r.json()["model_version"] == "3" and r.headers["X-Model-Version"] == f"{NAME}@3"
    assert client.get(f"/v2/models/{NAME}/versions/3/ready").json()["ready"] is True
    assert client.get(f"/v2/models/{NAME}/versions/2").status_code == 404
    status = client.get(f"/v1/models/{NAME}").json()["model_version_status"]
    assert [s["version"] for s in status] == ["1", "3"]


def test_two_aliases_of_one_name(vws, open_client, b64_image):
    store.set_alias(vws, NAME, 2, "staging")
    client = open_client(f"{NAME}@production", f"{NAME}@staging")
    server = client.app.state.server
    assert sorted(server.models) == [NAME, f"{NAME}@staging"]
    img = b64_image()
    assert _predict(client, img).json()["modelVersionId"] == "1"
    assert _predict(client, img, f"{NAME}@staging").json()["modelVersionId"] == "2"
    assert _predict(client, img, f"{NAME}@2").json()["modelVersionId"] == "2"
    assert client.get(f"/v2/models/{NAME}").json()["versions"] == ["1", "2"]


def _probs(r) -> list[float]:
    return r.json()["predictions"][0]["confidences"]


def test_a_moved_alias_switches_and_in_flight_requests_keep_the_old_version(
    vws, open_client, b64_image
):
    client = open_client(f"{NAME}@production")
    server = client.app.state.server
    img = b64_image()
    before = _probs(_predict(client, img))
    old = server.acquire(NAME)  # a request in flight holds version 1
    store.set_alias(vws, NAME, 2, "production")
    server.watcher.poll()
    r = _predict(client, img)
    assert r.json()["modelVersionId"] == "2" and r.headers["X-Model-Version"] == f"{NAME}@2"
    assert _probs(r) != before  # another model answered
    assert old.version == 1 and old in server._retiring
    assert old.batcher.pending == 0 and not old.batcher._stopped  # still usable while held
    server.release(old)
    _wait(lambda: old not in server._retiring)
    assert old.batcher._stopped
    text = client.get("/metrics").text
    assert f'autovision_model_switches_total{{model="{NAME}"}} 1' in text
    assert f'autovision_model_version{{model="{NAME}",model_id="{model_id(2)}"}} 2' in text
    server.watcher.poll()  # no move, no switch
    assert server.switches.value(model=NAME) == 1


def _prepare(b64: str):
    import base64

    from autovision.serving.inference import prepare_encoded

    def prepare(spec=None):
        return prepare_encoded([base64.b64decode(b64)], spec, 10**8)

    return prepare


def test_a_request_holding_the_old_version_past_the_timeout_still_gets_it(
    vws, open_client, b64_image
):
    """A holder (e.g. still reading a slow upload) keeps the old version running however
    long it takes; the timeout only bounds the drain of what was queued."""
    from autovision.serving.inference import classify

    client = open_client(f"{NAME}@production", request_timeout_s=0.2)
    server = client.app.state.server
    old = server.acquire(NAME)
    try:
        store.set_alias(vws, NAME, 2, "production")
        server.watcher.poll()
        time.sleep(1.6)  # past the old deadline of request_timeout_s + 1 s
        assert not old.batcher._stopped
        spec = old.package.preprocessing
        prepare = _prepare(b64_image())
        answered, probs = client.portal.call(classify, server, old, 1, lambda s=spec: prepare(s))
        assert answered is old and probs.shape == (1, len(old.labels))
    finally:
        server.release(old)
    _wait(lambda: old.batcher._stopped)


def test_a_retired_version_that_stopped_answers_through_the_new_one(vws, open_client, b64_image):
    from autovision.serving.inference import classify

    client = open_client(f"{NAME}@production")
    server = client.app.state.server
    old = server.acquire(NAME)
    try:
        store.set_alias(vws, NAME, 2, "production")
        server.watcher.poll()
        old.batcher.stop()  # as if retired under the request
        spec = old.package.preprocessing
        prepare = _prepare(b64_image())
        answered, probs = client.portal.call(classify, server, old, 1, lambda s=spec: prepare(s))
        assert answered.version == 2 and answered is server.models[NAME]
        assert probs.shape == (1, len(answered.labels))
        assert answered.users == 0  # the retry released what it acquired
    finally:
        server.release(old)


def test_a_switch_during_shutdown_leaves_nothing_loaded(vws, open_client, monkeypatch):
    client = open_client(f"{NAME}@production")
    server = client.app.state.server
    made = []
    real = server._serve
    monkeypatch.setattr(server, "_serve", lambda *a, **kw: made.append(real(*a, **kw)) or made[-1])
    old = server.models[NAME]
    server.close()  # the watcher's switch was still loading when shutdown began
    assert server.switch(NAME, model_id(2), 2) is old
    assert server.models[NAME] is old and not server._retiring
    (new,) = made
    assert new.batcher._stopped


def test_a_followed_alias_that_fails_to_load_at_start_is_followed(vws, open_client, b64_image):
    corrupt(vws, model_id(1))
    client = open_client(f"{NAME}@production")
    server = client.app.state.server
    assert client.get("/v2/health/ready").status_code == 503
    assert server.follows == {NAME: (NAME, "production")}
    server.watcher.poll()  # the same broken version is not tried again
    assert server.switch_failures.value(model=NAME) == 0 and NAME not in server.models
    store.set_alias(vws, NAME, 2, "production")
    server.watcher.poll()
    assert _predict(client, b64_image()).json()["modelVersionId"] == "2"
    assert server.is_ready() and client.get("/v2/health/ready").status_code == 200
    assert server.switches.value(model=NAME) == 1


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(
    vws, open_client, b64_image, caplog
):
    client = open_client(f"{NAME}@production")
    server = client.app.state.server
    corrupt(vws, model_id(3))
    store.set_alias(vws, NAME, 3, "production")
    server.watcher.poll()
    server.watcher.poll()  # the same broken version is not tried again
    img = b64_image()
    assert _predict(client, img).json()["modelVersionId"] == "1"
    assert server.switch_failures.value(model=NAME) == 1
    assert f"version 3 ({model_id(3)}) of {NAME} cannot be served" in caplog.text
    text = client.get("/metrics").text
    assert f'autovision_model_switch_failures_total{{model="{NAME}"}} 1' in text
    # the next move is followed
    store.set_alias(vws, NAME, 2, "production")
    server.watcher.poll()
    assert _predict(client, img).json()["modelVersionId"] == "2"


def _wait(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---- admin alias routes --------------------------------------------------------------


@pytest.fixture
def admin(vws, open_client):
    key_id, key = create_key(vws, "admin")
    client = open_client(f"{NAME}@production")
    client.headers["Authorization"] = f"Bearer {key}"
    return client, key_id


def test_admin_alias_routes(vws, admin):
    client, key_id = admin
    base = f"/admin/models/{NAME}"
    assert client.get(f"{base}/aliases").json() == {
        "name": NAME,
        "aliases": {"default": 1, "production": 1},
    }
    r = client.put(f"{base}/aliases/production", json={"version": 3, "reason": "better"})
    assert r.status_code == 200, r.text
    event = r.json()["event"]
    assert (event["from_version"], event["to_version"], event["actor"]) == (1, 3, key_id)
    assert store.alias_target(vws, NAME, "production") == (model_id(3), 3)
    r = client.post(f"{base}/aliases/production:rollback", json={"reason": "oops"})
    assert r.status_code == 200, r.text
    assert r.json()["event"]["to_version"] == 1
    r = client.post(f"{base}/aliases/production:rollback")  # no body: fine
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_to_roll_back"
    events = client.get(f"{base}/history").json()["events"]
    moves = [(e["kind"], e["alias"], e["to_version"], e["actor"]) for e in events][-2:]
    assert moves == [("set", "production", 3, key_id), ("rollback", "production", 1, key_id)]
    only = client.get(f"{base}/history", params={"alias": "default"}).json()["events"]
    assert only and {e["alias"] for e in only} == {"default"}
    audit = [e for e in read_audit(vws.audit_log_path) if e.get("action") == "alias.rollback"]
    assert audit and audit[-1]["key_id"] == key_id


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("get", "/admin/models/nope/aliases", None, 404, "model_name_not_found"),
        ("get", "/admin/models/nope/history", None, 404, "model_name_not_found"),
        ("put", f"/admin/models/{NAME}/aliases/production", {"version": 9}, 404, None),
        ("put", "/admin/models/nope/aliases/production", {"version": 1}, 404, None),
        ("put", f"/admin/models/{NAME}/aliases/production", {"version": 1}, 409, None),
        ("put", f"/admin/models/{NAME}/aliases/Bad!", {"version": 1}, 400, "invalid_alias"),
        ("put", f"/admin/models/{NAME}/aliases/production", {"version": "x"}, 400, None),
        ("put", f"/admin/models/{NAME}/aliases/production", {}, 400, None),
        ("post", f"/admin/models/{NAME}/aliases/nope:rollback", None, 404, "alias_not_found"),
        ("post", "/admin/models/nope/aliases/production:rollback", None, 404, None),
    ],
)
def test_admin_alias_refusals(admin, method, path, body, status, code):
    client, _ = admin
    kwargs = {"json": body} if body is not None else {}
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code


def test_admin_alias_routes_need_json_and_an_admin_key(vws, admin, open_client):
    client, _ = admin
    path = f"/admin/models/{NAME}/aliases/production"
    r = client.put(path, content=b'{"version": 2}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post(f"{path}:rollback", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    _, predict_key = create_key(vws, "predict")
    r = client.put(path, json={"version": 2}, headers={"Authorization": f"Bearer {predict_key}"})
    assert r.status_code == 403
    assert store.alias_target(vws, NAME, "production") == (model_id(1), 1)
