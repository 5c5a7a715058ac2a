"""``autovision console`` and ``autovision users`` through Typer's CliRunner (the server
itself is not started: ``_serve`` is replaced by a TestClient of the app it was given)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from autovision.cli import console as console_cli
from autovision.cli.main import app
from autovision.console import auth
from autovision.security.audit import read_audit

runner = CliRunner()
PASSWORD = "a long enough password"


def users(ws, *args: str, stdin: str | None = None):
    return runner.invoke(app, ["users", *args, "--workspace", str(ws.root)], input=stdin)


def test_users_create_list_disable_passwd(workspace):
    r = users(workspace, "create", "ada", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert r.exit_code == 0, r.output
    assert "created console user ada (role admin)" in r.output
    assert auth.authenticate(workspace, "ada", PASSWORD).role == "admin"
    r = users(workspace, "create", "bob", "--role", "viewer", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.exit_code == 0, r.output  # prompted twice
    r = users(workspace, "list", "--json")
    listed = json.loads(r.output)["users"]
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [
        ("ada", "admin", False),
        ("bob", "viewer", False),
    ]
    assert "hash" not in r.output
    assert users(workspace, "disable", "bob").exit_code == 0
    assert auth.authenticate(workspace, "bob", PASSWORD) is None
    r = users(workspace, "passwd", "bob", "--password-stdin", stdin="another password 2")
    assert r.exit_code == 0, r.output
    assert auth.authenticate(workspace, "bob", "another password 2").name == "bob"
    actions = [e["action"] for e in read_audit(workspace.audit_log_path)]
    assert actions == [
        "console.user.create",
        "console.user.create",
        "console.user.disable",
        "console.user.passwd",
    ]


def test_users_errors_are_one_line(workspace):
    r = users(workspace, "create", "ada", "--password-stdin", stdin="short")
    assert r.exit_code == 1 and "too short" in r.output
    r = users(workspace, "create", "ada", stdin=f"{PASSWORD}\nsomething else\n")
    assert r.exit_code == 1 and "the two passwords differ" in r.output
    r = users(workspace, "disable", "nobody")
    assert r.exit_code == 1 and "no console user named 'nobody'" in r.output
    r = users(workspace, "create", "ada", "--role", "root", "--password-stdin", stdin=PASSWORD)
    assert r.exit_code == 2


def test_console_prints_a_one_time_login_link(workspace, monkeypatch):
    served = {}

    def fake_serve(app_, **kwargs):
        served.update(app=app_, **kwargs)

    monkeypatch.setattr(console_cli, "_serve", fake_serve)
    r = runner.invoke(app, ["console", "--no-browser", "--workspace", str(workspace.root)])
    assert r.exit_code == 0, r.output
    url = re.search(r"http://127\.0\.0\.1:8090/\?token=(\S+)", r.output)
    assert url, r.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8090
    client = TestClient(served["app"], base_url="http://127.0.0.1:8090")
    first = client.get(f"/?token={url.group(1)}", follow_redirects=False)
    assert first.status_code == 303 and "av_session" in client.cookies
    again = TestClient(served["app"], base_url="http://127.0.0.1:8090")
    assert again.get(f"/?token={url.group(1)}").status_code == 401


def test_console_refuses_a_public_address_without_users(workspace, monkeypatch):
    monkeypatch.setattr(console_cli, "_serve", lambda app_, **kw: None)
    args = ["console", "--host", "0.0.0.0", "--no-browser", "--workspace", str(workspace.root)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1
    assert "not a loopback address" in r.output and "autovision users create" in r.output
    auth.create_user(workspace, "ada", "admin", PASSWORD)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--tls-cert", "cert.pem"])
    assert r.exit_code == 1 and "go together" in r.output
