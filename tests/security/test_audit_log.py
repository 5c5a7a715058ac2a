"""The audit log: append-only JSON lines, safe with concurrent writers."""

from __future__ import annotations

import json
import stat
import threading

from autovision.security import AuditLog, read_audit


def test_append_only_json_lines(workspace):
    log = AuditLog(workspace.audit_log_path)
    assert list(read_audit(workspace.audit_log_path)) == []
    log.write("admin", action="keys.create", target="k-1")
    AuditLog(workspace.audit_log_path).write("refused", status=401, reason="missing key")
    lines = workspace.audit_log_path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "admin" and first["target"] == "k-1" and first["time"]
    assert second["status"] == 401
    assert stat.S_IMODE(workspace.audit_log_path.stat().st_mode) == 0o600


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "audit.log"
    logs = [AuditLog(path) for _ in range(4)]

    def write(i: int) -> None:
        for j in range(50):
            logs[i].write("refused", writer=i, n=j, reason="x" * 500)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = list(read_audit(path))
    assert len(events) == 200
    assert {(e["writer"], e["n"]) for e in events} == {(i, j) for i in range(4) for j in range(50)}
