"""``autovision serve`` and ``autovision keys``: start-up checks, uvicorn arguments, keys."""

from __future__ import annotations

import json
import os

import pytest
import typer
from typer.testing import CliRunner

from autovision.security import read_audit, verify

from .conftest import MODEL

runner = CliRunner()


@pytest.fixture
def cli() -> typer.Typer:
    from autovision.cli import serve

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    serve.register(app)
    return app


@pytest.fixture
def started(monkeypatch) -> list:
    """Replace the blocking server run; record the settings it was given."""
    import autovision.serving.app as server_app

    calls: list = []
    monkeypatch.setattr(server_app, "serve", lambda settings, ws=None: calls.append(settings))
    return calls


def _serve(cli, ws, *args):
    return runner.invoke(cli, ["serve", *args, "--workspace", str(ws.root)])


def test_serve_defaults_to_loopback_and_every_model(cli, served_ws, started):
    r = _serve(cli, served_ws)
    assert r.exit_code == 0, r.output
    (settings,) = started
    assert settings.host == "127.0.0.1" and settings.port == 8080
    assert settings.model_ids == [] and settings.workspace == str(served_ws.root)
    assert settings.inference_workers is None  # one per core on CPU, decided at load


def test_serve_tuning_flags(cli, served_ws, started, monkeypatch):
    r = _serve(cli, served_ws, "--inference-workers", "3", "--max-batch-size", "8")
    assert r.exit_code == 0, r.output
    assert started[-1].inference_workers == 3 and started[-1].max_batch_size == 8
    monkeypatch.setenv("AUTOVISION_SERVE_INFERENCE_WORKERS", "2")  # unset flag: env applies
    assert _serve(cli, served_ws).exit_code == 0
    assert started[-1].inference_workers == 2


def test_serve_refuses_public_bind_without_keys(cli, served_ws, started):
    r = _serve(cli, served_ws, MODEL, "--host", "0.0.0.0")
    assert r.exit_code == 1
    assert "--insecure-no-auth" in r.output
    assert not started
    r = _serve(cli, served_ws, MODEL, "--host", "0.0.0.0", "--insecure-no-auth")
    assert r.exit_code == 0, r.output
    from autovision.security import create_key

    create_key(served_ws, "predict")
    r = _serve(cli, served_ws, MODEL, "--host", "0.0.0.0", "--port", "9000", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert started[-1].host == "0.0.0.0" and started[-1].workers == 2
    assert started[-1].model_ids == [MODEL]


def test_serve_errors(cli, served_ws, workspace, started, tmp_path):
    r = _serve(cli, served_ws, "no-such-model")
    assert r.exit_code == 1 and "no-such-model" in r.output
    r = _serve(cli, served_ws, "--ssl-certfile", str(tmp_path / "c.pem"))
    assert r.exit_code == 1 and "ssl-keyfile" in r.output
    r = _serve(cli, served_ws, "--ssl-certfile", "missing.pem", "--ssl-keyfile", "missing.key")
    assert r.exit_code == 1 and "no such file" in r.output
    assert not started


def test_serve_passes_tls_and_app_to_uvicorn(served_ws, monkeypatch, tmp_path):
    import uvicorn
    from fastapi import FastAPI

    import autovision.serving.middleware as middleware
    from autovision.serving.app import serve
    from autovision.serving.settings import ServerSettings

    calls: list = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    configured: list = []
    monkeypatch.setattr(middleware, "configure_logging", lambda: configured.append(1))
    settings = ServerSettings(
        workspace=str(served_ws.root), model_ids=[MODEL], port=8443,
        ssl_certfile="c.pem", ssl_keyfile="k.pem",
    )  # fmt: skip
    serve(settings, served_ws)
    app, kw = calls[-1]
    assert isinstance(app, FastAPI)
    assert kw["host"] == "127.0.0.1" and kw["port"] == 8443
    assert kw["ssl_certfile"] == "c.pem" and kw["ssl_keyfile"] == "k.pem"
    assert kw["access_log"] is False
    try:
        serve(settings.model_copy(update={"workers": 2}), served_ws)
        app, kw = calls[-1]
        assert app == "autovision.serving.app:create_app_from_env"
        assert kw["factory"] is True and kw["workers"] == 2
        assert json.loads(os.environ["AUTOVISION_SERVE_MODEL_IDS"]) == [MODEL]
        from autovision.serving.app import create_app_from_env

        rebuilt = create_app_from_env().state.server.settings
        assert rebuilt.model_ids == [MODEL] and rebuilt.ort_threads >= 1
        assert rebuilt.ssl_certfile == "c.pem"
        assert len(configured) == 3  # the parent and each rebuilt app log request ids
    finally:
        for var in list(os.environ):
            if var.startswith("AUTOVISION_SERVE_"):
                del os.environ[var]


def test_keys_cli(workspace):
    from autovision.cli.keys import app

    ws_args = ["--workspace", str(workspace.root)]
    r = runner.invoke(app, ["create", "--role", "admin", "--json", *ws_args])
    assert r.exit_code == 0, r.output
    created = json.loads(r.output)
    assert set(created) == {"id", "role", "key"} and created["role"] == "admin"
    assert verify(workspace, created["key"]) == "admin"

    r = runner.invoke(app, ["create", *ws_args])
    assert r.exit_code == 0 and "not shown again" in r.output

    r = runner.invoke(app, ["list", "--json", *ws_args])
    keys = json.loads(r.output)["keys"]
    assert len(keys) == 2 and {k["role"] for k in keys} == {"admin", "predict"}
    assert created["key"] not in r.output

    r = runner.invoke(app, ["revoke", created["id"], *ws_args])
    assert r.exit_code == 0
    assert verify(workspace, created["key"]) is None
    r = runner.invoke(app, ["revoke", "k-missing", *ws_args])
    assert r.exit_code == 1 and "k-missing" in r.output
    r = runner.invoke(app, ["create", "--role", "root", *ws_args])
    assert r.exit_code == 2

    actions = [(e["action"], e["outcome"]) for e in read_audit(workspace.audit_log_path)]
    ok, error = "ok", "error"
    assert actions == [
        ("keys.create", ok), ("keys.create", ok), ("keys.revoke", ok), ("keys.revoke", error)
    ]  # fmt: skip
    r = runner.invoke(app, ["list", *ws_args])
    assert "revoked" in r.output


def test_serve_help_shows_the_hardening_flags(cli):
    r = runner.invoke(cli, ["serve", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0
    for flag in (
        "--auth",
        "--allowed-host",
        "--allowed-origin",
        "--admin-port",
        "--admin-host",
        "--insecure-no-auth",
    ):
        assert flag in r.output, flag


def test_serve_auth_policy(cli, served_ws, started):
    from autovision.security import create_key

    r = _serve(cli, served_ws, "--auth", "required")
    assert r.exit_code == 1 and "autovision keys create" in r.output
    assert not started
    r = _serve(cli, served_ws, "--auth", "off", "--host", "0.0.0.0")
    assert r.exit_code == 1 and "--insecure-no-auth" in r.output
    create_key(served_ws, "admin")
    r = _serve(cli, served_ws, "--auth", "off", "--host", "0.0.0.0")  # keys exist, still off
    assert r.exit_code == 1 and "--auth off" in r.output
    r = _serve(cli, served_ws, "--auth", "off", "--host", "0.0.0.0", "--insecure-no-auth")
    assert r.exit_code == 0, r.output
    assert started[-1].auth == "off"
    r = _serve(cli, served_ws, "--auth", "required")
    assert r.exit_code == 0 and started[-1].auth == "required"
    assert "API keys required" in r.output
    assert _serve(cli, served_ws, "--auth", "sometimes").exit_code == 2


def test_serve_host_and_admin_port_flags(cli, served_ws, started, monkeypatch):
    r = _serve(
        cli,
        served_ws,
        "--allowed-host",
        "models.example",
        "--allowed-host",
        "gpu-box",
        "--allowed-origin",
        "https://console.example",
        "--admin-port",
        "9091",
    )
    assert r.exit_code == 0, r.output
    s = started[-1]
    assert s.allowed_hosts == ["models.example", "gpu-box"]
    assert s.allowed_origins == ["https://console.example"]
    assert s.admin_port == 9091 and s.admin_host is None
    assert "admin on http://127.0.0.1:9091" in r.output
    r = _serve(cli, served_ws, "--admin-port", "8080")
    assert r.exit_code == 1 and "--admin-port" in r.output
    r = _serve(cli, served_ws, "--admin-port", "9091", "--workers", "2")
    assert r.exit_code == 1 and "--workers 1" in r.output
    monkeypatch.setenv("AUTOVISION_SERVE_AUTH", "off")  # unset flags: the environment applies
    monkeypatch.setenv("AUTOVISION_SERVE_ALLOWED_HOSTS", '["env.example"]')
    assert _serve(cli, served_ws).exit_code == 0
    assert started[-1].auth == "off" and started[-1].allowed_hosts == ["env.example"]


def test_serve_missing_model_fails_fast(cli, served_ws, started):
    r = _serve(cli, served_ws, "m-missing")
    assert r.exit_code == 1 and "m-missing" in r.output
    assert not started


def test_serve_a_ref_says_what_it_follows(cli, served_ws, started):
    """A named model (registered under its dataset's name, toy) is served under its name."""
    r = _serve(cli, served_ws, "toy", "--alias-poll-s", "0.5")
    assert r.exit_code == 0, r.output
    assert started[-1].model_ids == ["toy"] and started[-1].alias_poll_s == 0.5
    out = " ".join(r.output.split())  # the console wraps long lines
    assert f"/v1/models/toy:predict -> toy@1 ({MODEL})" in out
    assert "following toy@default (checked every 0.5 s)" in out
    r = _serve(cli, served_ws, "toy@1")
    assert r.exit_code == 0, r.output
    assert "following" not in r.output


def test_serve_an_unknown_ref_fails_before_binding(cli, served_ws, started):
    started.clear()
    for ref in ("toy@production", "nope", "toy@9"):
        r = _serve(cli, served_ws, ref)
        assert r.exit_code != 0 and "no " in r.output.lower(), r.output
    assert started == []


def test_serve_prediction_log_flags(cli, served_ws, started):
    assert _serve(cli, served_ws, MODEL).exit_code == 0
    s = started[-1]
    assert (s.log_predictions, s.log_rate, s.log_store_images, s.retention) == (
        True,
        1.0,
        True,
        "30d",
    )
    args = ("--log-rate", "0.2", "--no-store-images", "--retention", "7d")
    assert _serve(cli, served_ws, MODEL, *args).exit_code == 0
    s = started[-1]
    assert (s.log_rate, s.log_store_images, s.retention) == (0.2, False, "7d")
    assert _serve(cli, served_ws, MODEL, "--no-log").exit_code == 0
    assert started[-1].log_predictions is False
    r = _serve(cli, served_ws, MODEL, "--retention", "forever")
    assert r.exit_code == 1 and "--retention" in r.output
