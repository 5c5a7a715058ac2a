"""``autovision audit verify|show`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.security.audit import audit_event, line_hash

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

runner = CliRunner()


def run(ws: Path, *args: str):
    return runner.invoke(app, ["audit", *args, "--workspace", str(ws)])


@pytest.fixture
def ws(workspace):
    for i in range(5):
        audit_event(workspace, "dataset.import", name=f"d{i}")
    audit_event(workspace, "keys.create", event="admin", target="k-1")
    return workspace


def test_verify_ok(ws):
    r = run(ws.root, "verify")
    assert r.exit_code == 0, r.output
    assert "audit log: 6 lines, chain intact" in r.output
    tail = line_hash(ws.audit_log_path.read_bytes().splitlines()[-1])
    assert f"tail: seq 6 hash {tail}" in r.output
    r = run(ws.root, "verify", "--json")
    out = json.loads(r.output)
    assert r.exit_code == 0 and out["ok"] and out["lines"] == 6 and out["tail_hash"] == tail


def test_verify_names_the_broken_line_and_exits_non_zero(ws):
    lines = ws.audit_log_path.read_text().splitlines()
    del lines[2]
    ws.audit_log_path.write_text("".join(line + "\n" for line in lines))
    r = run(ws.root, "verify")
    assert r.exit_code == 1 and "line 3: seq jumps from 2 to 4" in r.output
    out = json.loads(run(ws.root, "verify", "--json").output)
    assert out["ok"] is False and out["bad_line"] == 3 and "deleted" in out["problem"]


def test_verify_expect_tail(ws):
    tail = json.loads(run(ws.root, "verify", "--json").output)["tail_hash"]
    assert run(ws.root, "verify", "--expect-tail", tail).exit_code == 0
    lines = ws.audit_log_path.read_text().splitlines()
    ws.audit_log_path.write_text("".join(line + "\n" for line in lines[:-1]))
    assert run(ws.root, "verify").exit_code == 0  # a chain alone cannot tell
    r = run(ws.root, "verify", "--expect-tail", tail)
    assert r.exit_code == 1 and "cut off" in r.output


def test_show(ws):
    r = run(ws.root, "show", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)["events"]) == 6
    r = run(ws.root, "show", "--event", "admin", "--json")
    assert [e["action"] for e in json.loads(r.output)["events"]] == ["keys.create"]
    r = run(ws.root, "show", "--event", "dataset", "--since", "1h", "--limit", "2", "--json")
    assert [e["name"] for e in json.loads(r.output)["events"]] == ["d3", "d4"]
    r = run(ws.root, "show", "--event", "dataset.import")
    assert r.exit_code == 0 and "dataset.import" in r.output and "name=d4" in r.output
    assert run(ws.root, "show", "--since", "soon").exit_code == 2
    assert "no audit events match" in run(ws.root, "show", "--event", "nothing").output
