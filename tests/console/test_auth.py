"""Console auth: password and token logins, sessions, CSRF, roles, Host and Origin checks,
security headers, and the user library."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from autovision.console import auth
from autovision.console.auth import ACTIONS, ROLES, ConsoleAuthError, role_allows
from autovision.security.audit import read_audit

from ._helpers import BASE, PASSWORD, csrf_of, login

EXPECTED = {
    "read": {"admin", "trainer", "reviewer", "viewer"},
    "dataset.import": {"admin", "trainer"},
    "dataset.import_server_path": {"admin"},
    "dataset.edit": {"admin", "trainer"},
    "train.start": {"admin", "trainer"},
    "label": {"admin", "trainer", "reviewer"},
    "review": {"admin", "reviewer"},
    "deploy": {"admin"},
    "users": {"admin"},
}


def test_the_role_table():
    assert set(ACTIONS) == set(EXPECTED)
    for action, roles in EXPECTED.items():
        for role in ROLES:
            assert role_allows(role, action) == (role in roles), (role, action)
    assert not role_allows("admin", "no.such.action")
    assert not role_allows("root", "read")


def test_password_login_sets_a_strict_http_only_cookie(app, workspace):
    auth.create_user(workspace, "ada", "trainer", PASSWORD)
    client = TestClient(app, base_url=BASE)
    response = login(client, "ada")
    assert response.status_code == 303 and response.headers["location"] == "/datasets"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("av_session=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
    assert "secure" not in lowered
    page = client.get("/datasets")
    assert page.status_code == 200 and "ada" in page.text and "trainer" in page.text
    events = [e for e in read_audit(workspace.audit_log_path) if e["action"] == "console.login"]
    assert events[-1]["user"] == "ada" and events[-1]["outcome"] == "ok"
    # the DB holds the token's hash, never the token
    token = client.cookies["av_session"]
    with workspace.Session() as s:
        from autovision.workspace.db import ConsoleSessionRow

        ids = [r.id for r in s.query(ConsoleSessionRow)]
    assert token not in ids and auth.token_hash(token) in ids


def test_secure_cookie_under_tls(make_app, workspace):
    auth.create_user(workspace, "ada", "viewer", PASSWORD)
    client = TestClient(make_app(secure=True), base_url="https://127.0.0.1:8090")
    response = login(client, "ada")
    assert "secure" in response.headers["set-cookie"].lower()
    assert "strict-transport-security" in response.headers


def test_wrong_password_and_unknown_user_are_refused(app, workspace):
    auth.create_user(workspace, "ada", "admin", PASSWORD)
    client = TestClient(app, base_url=BASE)
    for name, password in (("ada", "wrong password"), ("nobody", PASSWORD)):
        response = login(client, name, password)
        assert response.status_code == 401
        assert "Wrong user name or password" in response.text
        assert "av_session" not in client.cookies
    refused = [e for e in read_audit(workspace.audit_log_path) if e["outcome"] == "refused"]
    assert [e["user"] for e in refused] == ["ada", "nobody"]


def test_login_form_needs_its_own_token(app, workspace):
    auth.create_user(workspace, "ada", "admin", PASSWORD)
    client = TestClient(app, base_url=BASE)
    response = client.post(
        "/login", data={"name": "ada", "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403 and "av_session" not in client.cookies


def test_next_stays_on_this_console(app, workspace):
    auth.create_user(workspace, "ada", "admin", PASSWORD)
    client = TestClient(app, base_url=BASE)
    first = client.get("/datasets", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fdatasets"
    from autovision.console.routes.session import safe_next

    assert safe_next("//evil.example/x") == "/datasets"
    assert safe_next("https://evil.example") == "/datasets"
    assert safe_next("/\\evil.example") == "/datasets"
    assert safe_next("/datasets?job=1") == "/datasets?job=1"


def test_token_login_works_once(app, workspace):
    token = app.state.console.login_tokens.issue()
    client = TestClient(app, base_url=BASE)
    response = client.get(f"/?token={token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/datasets"
    page = client.get("/datasets")
    assert page.status_code == 200 and "local:" in page.text and "admin" in page.text
    other = TestClient(app, base_url=BASE)
    again = other.get(f"/?token={token}", follow_redirects=False)
    assert again.status_code == 401 and "used already or has expired" in again.text
    assert "av_session" not in other.cookies


def test_token_expires():
    tokens = auth.LoginTokens(ttl_s=-1)
    assert not tokens.consume(tokens.issue())
    assert not auth.LoginTokens().consume("made-up")


def test_pages_need_a_session(app):
    client = TestClient(app, base_url=BASE)
    assert client.get("/datasets", follow_redirects=False).status_code == 303
    htmx = client.get("/datasets/table", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/login"
    assert client.post("/datasets/import-path", data={}).status_code == 401


def test_state_changing_requests_need_the_csrf_token(client_as, workspace):
    client, csrf = client_as("viewer")
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    wrong = client.post("/logout", headers={"X-CSRF-Token": "x" + csrf}, follow_redirects=False)
    assert wrong.status_code == 403
    assert client.get("/datasets").status_code == 200  # still logged in
    events = [e for e in read_audit(workspace.audit_log_path) if e["action"] == "console.refused"]
    assert events and events[-1]["reason"] == "csrf" and events[-1]["user"] == "viewer-user"
    by_form = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert by_form.status_code == 303
    assert client.get("/datasets", follow_redirects=False).status_code == 303  # logged out


def test_csrf_by_header(client_as):
    client, csrf = client_as("viewer")
    response = client.post("/logout", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert response.status_code == 303


def test_host_header_is_checked(make_app):
    client = TestClient(make_app(), base_url="http://evil.example:8090")
    response = client.get("/login")
    assert response.status_code == 421 and "--allowed-host" in response.text
    allowed = TestClient(make_app(allowed_hosts=["console.lab"]), base_url="http://console.lab")
    assert allowed.get("/login").status_code == 200
    assert TestClient(make_app(), base_url="http://localhost:8090").get("/login").status_code == 200


def test_foreign_origin_and_referer_are_refused(client_as):
    client, csrf = client_as("viewer")
    headers = {"X-CSRF-Token": csrf}
    for extra in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Referer": "http://evil.example/page"},
    ):
        response = client.post("/logout", headers={**headers, **extra}, follow_redirects=False)
        assert response.status_code == 403, extra
    own = client.post("/logout", headers={**headers, "Origin": BASE}, follow_redirects=False)
    assert own.status_code == 303


def test_security_headers_and_no_cors(client_as):
    client, _ = client_as("viewer")
    response = client.get("/datasets", headers={"Origin": "http://evil.example"})
    h = response.headers
    assert "default-src 'self'" in h["content-security-policy"]
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "same-origin"
    assert not any(k.lower().startswith("access-control") for k in h)
    static = client.get("/static/htmx.min.js")
    assert static.status_code == 200 and "immutable" in static.headers["cache-control"]
    assert "content-security-policy" in static.headers


def test_disabled_user_loses_sessions_and_login(client_as, workspace):
    client, _ = client_as("trainer")
    assert client.get("/datasets").status_code == 200
    auth.disable_user(workspace, "trainer-user")
    assert client.get("/datasets", follow_redirects=False).status_code == 303
    assert login(client, "trainer-user").status_code == 401
    assert not auth.has_users(workspace)


def test_passwd_ends_sessions_and_role_changes_apply(client_as, workspace):
    client, _ = client_as("viewer")
    auth.set_password(workspace, "viewer-user", "a new long password")
    assert client.get("/datasets", follow_redirects=False).status_code == 303
    assert login(client, "viewer-user").status_code == 401
    assert login(client, "viewer-user", "a new long password").status_code == 303


def test_session_expiry(client_as, workspace, monkeypatch):
    client, _ = client_as("viewer")
    monkeypatch.setattr(auth, "IDLE_HOURS", -1.0)
    assert client.get("/datasets", follow_redirects=False).status_code == 303


def test_user_library_errors(workspace):
    auth.create_user(workspace, "ada", "viewer", PASSWORD)
    with pytest.raises(ConsoleAuthError, match="exists"):
        auth.create_user(workspace, "ada", "admin", PASSWORD)
    with pytest.raises(ConsoleAuthError, match="too short"):
        auth.create_user(workspace, "bob", "admin", "short")
    with pytest.raises(ConsoleAuthError, match="unknown role"):
        auth.create_user(workspace, "bob", "root", PASSWORD)
    with pytest.raises(ConsoleAuthError, match="invalid user name"):
        auth.create_user(workspace, "local:bob", "admin", PASSWORD)
    with pytest.raises(ConsoleAuthError, match="no console user"):
        auth.disable_user(workspace, "nobody")
    users = auth.list_users(workspace)
    assert users == [
        {"name": "ada", "role": "viewer", "disabled": False, "created_at": users[0]["created_at"]}
    ]
    with workspace.Session() as s:
        from autovision.workspace.db import ConsoleUserRow

        stored = s.get(ConsoleUserRow, "ada").password_hash
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_nav_lists_the_pages(client_as):
    client, _ = client_as("viewer")
    html = client.get("/datasets").text
    assert '<a href="/datasets" class="active" aria-current="page">Datasets</a>' in html
    for label in ("Train", "Models", "Deploy", "Monitor", "Label", "Usage"):
        assert f">{label}<" in html
    assert csrf_of(html) in html.split("<body", 1)[1]  # hx-headers on <body>
