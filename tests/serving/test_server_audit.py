"""The server's audit lines: start and stop, the chain checked at start-up, refusals bounded."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from autovision.security import create_key, read_audit
from autovision.security.audit import verify_log

from .conftest import MODEL

URL = f"/v1/models/{MODEL}:predict"


def _app(ws):
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    return create_app(ws, [MODEL], settings=ServerSettings(key_cache_ttl_s=0.0))


def _client(ws) -> TestClient:
    return TestClient(_app(ws), base_url="http://127.0.0.1")


def _lines(ws) -> int:
    """Audit lines so far (registering a model writes its first alias line)."""
    return len(list(read_audit(ws.audit_log_path)))


def test_start_and_stop_are_audited_and_the_chain_checked(served_ws, caplog):
    before = _lines(served_ws)
    create_key(served_ws, "admin")
    with caplog.at_level(logging.INFO, logger="autovision.serving"), _client(served_ws):
        pass
    if before:
        assert f"audit log: {before} lines, chain intact" in caplog.text
    else:
        assert "audit log: empty, a new chain starts" in caplog.text
    start, stop = (e for e in read_audit(served_ws.audit_log_path) if e["event"] == "server")
    assert start["action"] == "server.start" and start["outcome"] == "ok"
    assert start["models"] == [MODEL] and start["pid"] and start["user"]
    assert stop["action"] == "server.stop"

    with caplog.at_level(logging.INFO, logger="autovision.serving"), _client(served_ws):
        pass
    assert f"audit log: {before + 2} lines, chain intact" in caplog.text


def test_a_broken_chain_is_logged_at_start_up(served_ws, caplog):
    with TestClient(_app(served_ws), base_url="http://127.0.0.1"):
        pass
    path = served_ws.audit_log_path
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "server.start" in line)
    lines[at] = lines[at].replace("server.start", "server.begin")
    path.write_text("".join(lines))
    with caplog.at_level(logging.WARNING, logger="autovision.serving"), _client(served_ws):
        pass
    assert f"audit log: line {at + 1}: edited" in caplog.text


@pytest.mark.slow
def test_a_flood_of_refusals_is_aggregated(served_ws):
    create_key(served_ws, "predict")
    with TestClient(_app(served_ws), base_url="http://127.0.0.1") as client:
        for _ in range(1000):
            assert client.post(URL, json={"instances": []}).status_code == 401
    events = list(read_audit(served_ws.audit_log_path))
    refused = [e for e in events if e["event"] == "refused"]
    aggregate = [e for e in events if e["event"] == "refused.aggregate"]
    per_minute = 10
    assert per_minute <= len(refused) <= 2 * per_minute  # a minute may roll over once
    assert len(refused) + sum(e["count"] for e in aggregate) == 1000
    assert len(aggregate) <= 2 and aggregate[-1]["statuses"] == {"401": aggregate[-1]["count"]}
    assert verify_log(served_ws.audit_log_path).ok
