"""No admin key from a web page (issue 11): admin routes off without keys, the auth policy,
the Host and Origin checks, and bodies only of the types each route accepts."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from autovision.security import create_key, has_keys

from .conftest import MODEL

URL = f"/v1/models/{MODEL}:predict"
INFER = f"/v2/models/{MODEL}/infer"
EVIL = "https://evil.example"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def body(image_bytes) -> dict:
    return {"instances": [{"content": base64.b64encode(image_bytes(0, 8)).decode()}]}


def _code(r) -> str:
    err = r.json()
    return err["code"] if isinstance(err.get("error"), str) else err["error"]["code"]


# ---- a web page cannot mint an admin key ---------------------------------------------


def test_cross_origin_text_plain_cannot_mint_an_admin_key(client, served_ws):
    """The finding: no keys, a page posts text/plain (no CORS preflight) -> it was 201."""
    r = client.post(
        "/admin/keys",
        content=b'{"role": "admin"}',
        headers={"Origin": EVIL, "Content-Type": "text/plain"},
    )
    assert r.status_code == 403, r.text
    assert not has_keys(served_ws)


def test_admin_routes_disabled_until_a_key_exists(client, served_ws):
    # even a same-origin JSON request: the first key comes from the CLI
    r = client.post("/admin/keys", json={"role": "admin"})
    assert r.status_code == 403 and _code(r) == "admin_disabled"
    assert "autovision keys create --role admin" in r.json()["error"]["message"]
    for method, path in (
        ("GET", "/admin/keys"),
        ("GET", "/admin/models"),
        ("POST", "/admin/keys/reload"),
        ("DELETE", "/admin/keys/k-1"),
    ):
        assert client.request(method, path).status_code == 403, path
    assert not has_keys(served_ws)
    _, admin_key = create_key(served_ws, "admin")  # the CLI's way
    assert client.get("/admin/keys", headers=bearer(admin_key)).status_code == 200
    assert client.get("/admin/keys").status_code == 401


def test_admin_with_a_key_still_refuses_foreign_origin_and_text(client, served_ws):
    _, admin_key = create_key(served_ws, "admin")
    h = bearer(admin_key)
    r = client.post("/admin/keys", json={"role": "admin"}, headers={**h, "Origin": EVIL})
    assert r.status_code == 403 and _code(r) == "origin_not_allowed"
    r = client.post(
        "/admin/keys", content=b'{"role": "admin"}', headers={**h, "Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and _code(r) == "unsupported_media_type"
    r = client.post(
        "/admin/keys/reload",
        content=b"role=admin",
        headers={**h, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    r = client.post(
        "/admin/keys", json={"role": "predict"}, headers={**h, "Origin": "http://testserver"}
    )
    assert r.status_code == 201, r.text  # the server's own origin


# ---- the auth policy ------------------------------------------------------------------


def test_auth_required_without_keys(make_client, body):
    client = make_client(auth="required")
    r = client.post(URL, json=body)
    assert r.status_code == 401 and _code(r) == "missing_api_key"
    assert client.get("/metrics").status_code == 401
    assert client.get("/admin/models").status_code == 403  # admin_disabled
    assert client.get("/v2/health/ready").status_code == 200  # health stays open


def test_auth_off_opens_predictions_only(make_client, served_ws, body):
    client = make_client(auth="off")
    _, predict_key = create_key(served_ws, "predict")
    assert client.post(URL, json=body).status_code == 200
    assert client.post(URL, json=body, headers=bearer("avk_wrong")).status_code == 200
    r = client.get("/admin/models")
    assert r.status_code == 401 and _code(r) == "missing_api_key"
    assert client.get("/admin/models", headers=bearer(predict_key)).status_code == 403


def test_auth_auto_is_todays_policy(make_client, served_ws, body):
    client = make_client(auth="auto")
    assert client.post(URL, json=body).status_code == 200
    _, key = create_key(served_ws, "predict")
    assert client.post(URL, json=body).status_code == 401
    assert client.post(URL, json=body, headers=bearer(key)).status_code == 200


# ---- Host (DNS rebinding) and Origin ---------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "", "a b", "[::1"]
)
def test_foreign_host_is_refused_on_every_route(client, host):
    for method, path in (
        ("GET", "/v2/health/ready"),
        ("GET", "/healthz"),
        ("POST", URL),
        ("POST", "/admin/keys"),
    ):
        r = client.request(method, path, headers={"Host": host})
        assert r.status_code == 421, (host, path, r.text)
        assert _code(r) == "host_not_allowed"


def test_default_hosts_of_a_loopback_bind(served_ws):
    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings())  # host 127.0.0.1
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 421  # "testserver" is not configured
        for host in ("127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080", "localhost."):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        assert client.get("/healthz", headers={"Host": "10.0.0.1"}).status_code == 421


def test_host_policy_of_binds():
    from autovision.serving.hosts import HostPolicy, split_host

    wildcard = HostPolicy.for_bind("0.0.0.0", ["models.example"])
    assert wildcard.host_allowed("10.1.2.3") and wildcard.host_allowed("::1")
    assert wildcard.host_allowed("models.example")
    assert not wildcard.host_allowed("evil.example") and not wildcard.host_allowed("localhost")
    lan = HostPolicy.for_bind("192.168.1.5")
    assert lan.host_allowed("192.168.1.5") and not lan.host_allowed("192.168.1.6")
    assert not lan.host_allowed("localhost")
    assert HostPolicy.for_bind("127.0.0.1", ["*"]).host_allowed("anything.example")
    assert split_host("[::1]:80") == ("::1", 80)
    assert split_host("Example.COM.:443") == ("example.com", 443)
    for bad in ("", "a:b", "::1", "[nothost]", "x/y", "u@h", "h:1:2"):
        assert split_host(bad) is None, bad


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        ("http://testserver", True),
        ("http://testserver:80", True),
        ("HTTP://TESTSERVER", True),
        ("https://testserver", False),  # another scheme is another origin
        ("http://testserver:8080", False),
        (EVIL, False),
        ("null", False),
        ("http://testserver.evil.example", False),
        ("garbage", False),
    ],
)
def test_origin_of_state_changing_requests(client, body, origin, ok):
    r = client.post(URL, json=body, headers={"Origin": origin})
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 403 and _code(r) == "origin_not_allowed"
    # reading is not changing state: a GET with any Origin passes (no CORS headers are sent)
    assert client.get("/healthz", headers={"Origin": origin}).status_code == 200


def test_configured_origin(make_client, body):
    client = make_client(allowed_origins=["https://console.example"])
    assert (
        client.post(URL, json=body, headers={"Origin": "https://console.example:443"}).status_code
        == 200
    )
    assert (
        client.post(URL, json=body, headers={"Origin": "https://console.example:8443"}).status_code
        == 403
    )


# ---- content types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "text/plain",
        "application/x-python-pickle",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ],
)
def test_json_routes_need_application_json(client, body, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post(URL, content=json.dumps(body).encode(), headers=headers)
    assert r.status_code == 415, r.text
    assert _code(r) == "unsupported_media_type"
    r = client.post(
        f"/v1/projects/p/locations/l/endpoints/{MODEL}:predict",
        content=json.dumps(body).encode(),
        headers=headers,
    )
    assert r.status_code == 415


def test_json_with_charset_is_json(client, body):
    r = client.post(
        URL,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 200, r.text


def test_v2_content_types(client, image_bytes):
    import tritonclient.http as httpclient

    doc = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(image_bytes(0, 16)).decode()],
            }
        ]
    }
    raw = json.dumps(doc).encode()
    for ctype in ("text/plain", "application/x-python-pickle", "application/octet-stream"):
        r = client.post(INFER, content=raw, headers={"Content-Type": ctype})
        assert r.status_code == 415 and _code(r) == "unsupported_media_type", ctype
    assert client.post(INFER, content=raw).status_code == 200  # tritonclient sends no type
    assert client.post(INFER, json=doc).status_code == 200
    inp = httpclient.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([image_bytes(0, 16)], dtype=object))
    blob, size = httpclient.InferenceServerClient.generate_request_body([inp])
    header = {"Inference-Header-Content-Length": str(size)}
    for ctype in ("application/octet-stream", None):
        h = {**header, **({"Content-Type": ctype} if ctype else {})}
        assert client.post(INFER, content=blob, headers=h).status_code == 200, ctype
    h = {**header, "Content-Type": "text/plain"}
    assert client.post(INFER, content=blob, headers=h).status_code == 415


def test_upload_needs_multipart(client, image_bytes):
    path = f"/v1/models/{MODEL}:upload"
    assert client.post(path, files={"file": ("a.png", image_bytes(0, 16))}).status_code == 200
    for ctype in ("application/json", "image/png", "application/x-www-form-urlencoded"):
        r = client.post(path, content=image_bytes(0, 16), headers={"Content-Type": ctype})
        assert r.status_code == 415, ctype
