"""API keys on a running server, and the audit log of refused requests and admin actions."""

from __future__ import annotations

import base64

import pytest

from autovision.security import create_key, read_audit, revoke

from .conftest import MODEL

URL = f"/v1/models/{MODEL}:predict"


@pytest.fixture
def body(image_bytes) -> dict:
    return {"instances": [{"content": base64.b64encode(image_bytes(0, 8)).decode()}]}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_open_without_any_key_but_admin_disabled(client, body):
    assert client.post(URL, json=body).status_code == 200
    assert client.get("/metrics").status_code == 200
    r = client.get("/admin/models")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"
    assert "autovision keys create --role admin" in r.json()["error"]["message"]


def test_keys_created_while_running_take_effect(client, served_ws, body):
    assert client.post(URL, json=body).status_code == 200
    _, predict_key = create_key(served_ws, "predict")
    r = client.post(URL, json=body)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.post(URL, json=body, headers=bearer(predict_key)).status_code == 200
    assert client.post(URL, json=body, headers={"X-API-Key": predict_key}).status_code == 200
    r = client.post(URL, json=body, headers=bearer("avk_wrong"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_roles(client, served_ws, body):
    _, predict_key = create_key(served_ws, "predict")
    _, admin_key = create_key(served_ws, "admin")
    r = client.get("/admin/models", headers=bearer(predict_key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.get("/admin/models", headers=bearer(admin_key)).status_code == 200
    assert client.post(URL, json=body, headers=bearer(admin_key)).status_code == 200
    for path in (f"/v2/models/{MODEL}", "/v2", "/metrics", f"/v1/models/{MODEL}"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=bearer(predict_key)).status_code == 200, path


def test_health_checks_stay_open(client, served_ws):
    create_key(served_ws, "admin")
    for path in ("/v2/health/live", "/v2/health/ready", "/healthz"):
        assert client.get(path).status_code == 200


def test_revoked_key_is_refused_and_server_stays_locked(client, served_ws, body):
    key_id, key = create_key(served_ws, "predict")
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 200
    revoke(served_ws, key_id)
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 401
    # the last key revoked: the server stays locked, it does not open up again
    assert client.post(URL, json=body).status_code == 401


def test_key_cache_ttl(make_client, served_ws, body):
    client = make_client(key_cache_ttl_s=60)
    key_id, key = create_key(served_ws, "predict")
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 200
    revoke(served_ws, key_id)
    # cached for the TTL; an admin reload forgets the cache at once
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 200
    _, admin_key = create_key(served_ws, "admin")
    assert client.post("/admin/keys/reload", headers=bearer(admin_key)).status_code == 200
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 401


def test_unauthenticated_body_is_not_parsed(client, served_ws):
    create_key(served_ws, "predict")
    r = client.post(URL, content=b"{broken json", headers={"content-type": "application/json"})
    assert r.status_code == 401  # not 400: auth runs before the body is read


def test_admin_key_routes(client, served_ws, body):
    _, admin_key = create_key(served_ws, "admin")
    h = bearer(admin_key)
    r = client.post("/admin/keys", json={"role": "predict"}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["role"] == "predict" and created["key"].startswith("avk_")
    assert client.post(URL, json=body, headers=bearer(created["key"])).status_code == 200
    listed = client.get("/admin/keys", headers=h).json()
    assert {k["id"] for k in listed} >= {created["id"]}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert client.post("/admin/keys", json={"role": "root"}, headers=h).status_code == 400
    assert client.delete(f"/admin/keys/{created['id']}", headers=h).json()["revoked"] is True
    assert client.delete("/admin/keys/k-nope", headers=h).status_code == 404
    assert client.post(URL, json=body, headers=bearer(created["key"])).status_code == 401
    models = client.get("/admin/models", headers=h).json()["models"]
    assert [m["id"] for m in models] == [MODEL]


def test_audit_log(client, served_ws, body):
    admin_id, admin_key = create_key(served_ws, "admin")
    _, predict_key = create_key(served_ws, "predict")
    client.post(URL, json=body, headers={"X-Request-ID": "rid-401"})
    client.get("/admin/keys", headers={**bearer(predict_key), "X-Request-ID": "rid-403"})
    client.post("/admin/keys", json={"role": "predict"}, headers=bearer(admin_key))
    client.post(URL, content=b"x" * (11 * 1024 * 1024), headers=bearer(predict_key))
    client.post(URL, json=body, headers=bearer(predict_key))  # accepted: not audited

    events = list(read_audit(served_ws.audit_log_path))
    refused = [e for e in events if e["event"] == "refused"]
    assert [e["status"] for e in refused] == [401, 403, 413]
    first = refused[0]
    assert first["request_id"] == "rid-401"
    assert first["route"] == URL and first["method"] == "POST"
    assert first["client"] and first["reason"] and first["time"]
    assert first["code"] == "missing_api_key"
    assert refused[1]["request_id"] == "rid-403" and refused[1]["key_id"]
    admin = [e for e in events if e["event"] == "admin"]
    assert [e["action"] for e in admin] == ["keys.create"]
    assert admin[0]["key_id"] == admin_id
    assert all(predict_key not in str(e) and admin_key not in str(e) for e in events)


def test_audit_of_429(make_client, served_ws, body):
    import threading
    import time

    client = make_client(queue_limit=1, log_predictions=False)  # patches predict_array
    server = client.app.state.server
    gate = threading.Event()
    pkg = server.models[MODEL].package
    real = pkg.predict_array
    pkg.predict_array = lambda x, *session: (gate.wait(10), real(x, *session))[1]
    t = threading.Thread(target=client.post, args=(URL,), kwargs={"json": body})
    t.start()
    while server.models[MODEL].batcher.pending == 0:
        time.sleep(0.01)
    assert client.post(URL, json=body).status_code == 429
    gate.set()
    t.join(10)
    events = [e for e in read_audit(served_ws.audit_log_path) if e["event"] == "refused"]
    assert [e["status"] for e in events] == [429]
