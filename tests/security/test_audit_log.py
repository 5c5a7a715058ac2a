"""The audit log: append-only JSON lines in a hash chain, safe with concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import stat
import threading

import pytest

from autovision.security import AuditLog, read_audit
from autovision.security.audit import GENESIS, check_tail, line_hash, verify_log


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


def test_each_line_carries_the_previous_lines_hash(tmp_path):
    path = tmp_path / "audit.log"
    for i in range(3):
        AuditLog(path).write("x", i=i)
    raw = path.read_bytes().split(b"\n")[:-1]
    records = [json.loads(r) for r in raw]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == GENESIS
    assert records[1]["prev"] == line_hash(raw[0]) and records[2]["prev"] == line_hash(raw[1])
    verdict = verify_log(path)
    assert verdict.ok and verdict.lines == 3 and verdict.tail_hash == line_hash(raw[2])
    assert verdict.message() == "audit log: 3 lines, chain intact"


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
    assert verify_log(path).ok


def _append(path: str, writer: int, n: int, go) -> None:
    log = AuditLog(path)
    go.wait(30)
    for j in range(n):
        log.write("test", writer=writer, n=j, pad="y" * 300)


def test_concurrent_processes_keep_one_valid_chain(tmp_path):
    path = tmp_path / "audit.log"
    AuditLog(path).write("first")
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_append, args=(str(path), i, 100, go)) for i in range(4)]
    for p in procs:
        p.start()
    go.set()  # all at once
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    verdict = verify_log(path)
    assert verdict.ok, verdict.message()
    assert verdict.lines == 401 and verdict.tail_seq == 401


@pytest.fixture
def chain(tmp_path):
    """A log of 10 chained lines, and ``tamper(lines) -> verdict`` for a changed copy."""
    path = tmp_path / "audit.log"
    for i in range(10):
        AuditLog(path).write("x", i=i)
    lines = path.read_bytes().split(b"\n")[:-1]

    def tamper(changed: list[bytes]):
        out = tmp_path / "tampered.log"
        out.write_bytes(b"".join(line + b"\n" for line in changed))
        return verify_log(out)

    return lines, tamper


def test_edited_line_is_reported(chain):
    lines, tamper = chain
    lines[4] = lines[4].replace(b'"i": 4', b'"i": 40')
    verdict = tamper(lines)
    assert not verdict.ok and verdict.bad_line == 5
    assert "edited" in verdict.problem and "line 6" in verdict.problem
    assert verdict.message().startswith("audit log: line 5: ")


def test_edited_first_line_is_reported(chain):
    lines, tamper = chain
    lines[0] = lines[0].replace(b'"i": 0', b'"i": 9')
    verdict = tamper(lines)
    assert verdict.bad_line == 1 and "edited" in verdict.problem


def test_unparseable_line_is_reported(chain):
    lines, tamper = chain
    lines[6] = lines[6][:-5]
    verdict = tamper(lines)
    assert verdict.bad_line == 7 and "not a JSON object" in verdict.problem


def test_deleted_line_is_reported(chain):
    lines, tamper = chain
    del lines[3]
    verdict = tamper(lines)
    assert verdict.bad_line == 4 and "deleted" in verdict.problem
    assert "from 3 to 5" in verdict.problem


def test_deleted_first_line_is_reported(chain):
    lines, tamper = chain
    verdict = tamper(lines[1:])
    assert verdict.bad_line == 1 and "deleted" in verdict.problem


@pytest.mark.parametrize("copy_of", [2, 7])
def test_inserted_copy_is_reported(chain, copy_of):
    lines, tamper = chain
    lines.insert(5, lines[copy_of])
    verdict = tamper(lines)
    assert verdict.bad_line == 6 and "inserted" in verdict.problem


def test_inserted_unchained_line_is_reported(chain):
    lines, tamper = chain
    lines.insert(5, b'{"time": "2026-01-01T00:00:00+00:00", "event": "admin"}')
    verdict = tamper(lines)
    assert verdict.bad_line == 6 and "inserted" in verdict.problem


def test_inserted_line_with_a_recomputed_link_is_reported(chain):
    lines, tamper = chain
    forged = {"time": "t", "event": "x", "seq": 6, "prev": line_hash(lines[4])}
    lines.insert(5, json.dumps(forged).encode())
    verdict = tamper(lines)
    assert verdict.bad_line == 6 and "inserted" in verdict.problem


def test_reordered_lines_are_reported(chain):
    lines, tamper = chain
    lines[4], lines[5] = lines[5], lines[4]
    verdict = tamper(lines)
    assert verdict.bad_line == 5 and "reordered" in verdict.problem


def test_a_cut_off_tail_is_caught_by_the_expected_tail_hash(chain, tmp_path):
    lines, tamper = chain
    anchor = line_hash(lines[-1])
    assert tamper(lines[:-2]).ok  # a chain alone cannot tell
    verdict = verify_log(tmp_path / "tampered.log", expect_tail=anchor)
    assert not verdict.ok and "cut off" in verdict.problem
    assert verify_log(tmp_path / "audit.log", expect_tail=anchor).ok
    AuditLog(tmp_path / "audit.log").write("later")
    later = verify_log(tmp_path / "audit.log", expect_tail=anchor)
    assert later.ok and later.anchor_line == 10


def test_legacy_lines_before_the_chain(tmp_path):
    path = tmp_path / "audit.log"
    path.write_text('{"time": "t", "event": "admin"}\n{"time": "t", "event": "refused"}\n')
    AuditLog(path).write("x")
    AuditLog(path).write("y")
    records = list(read_audit(path))
    assert records[2]["seq"] == 1 and records[3]["seq"] == 2
    verdict = verify_log(path)
    assert verdict.ok and verdict.lines == 4 and verdict.legacy == 2
    assert "2 legacy lines" in verdict.message() and "not verifiable" in verdict.message()
    # the first chained line is linked to the last legacy line
    path.write_text(path.read_text().replace('"refused"', '"other"'))
    assert verify_log(path).bad_line == 2


def test_torn_last_line_is_kept_apart(tmp_path):
    path = tmp_path / "audit.log"
    AuditLog(path).write("x")
    with path.open("ab") as f:
        f.write(b'{"time": "t", "ev')
    AuditLog(path).write("y")
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["event"] == "y"
    verdict = verify_log(path)
    assert verdict.bad_line == 2 and "not a JSON object" in verdict.problem


def test_missing_log_verifies(tmp_path):
    assert verify_log(tmp_path / "none.log").ok
    assert check_tail(tmp_path / "none.log")[0]


def test_check_tail_whole_and_last_lines(tmp_path):
    path = tmp_path / "audit.log"
    for i in range(50):
        AuditLog(path).write("x", i=i)
    assert check_tail(path) == (True, "audit log: 50 lines, chain intact")
    ok, message = check_tail(path, full_below=100, tail_lines=10)
    assert ok and "50 lines" in message and "last 10" in message
    lines = path.read_bytes().split(b"\n")[:-1]
    lines[44] = lines[44].replace(b'"i": 44', b'"i": 4')
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    ok, message = check_tail(path, full_below=100, tail_lines=10)
    assert not ok and "edited" in message
    ok, message = check_tail(path)
    assert not ok and "line 45" in message
