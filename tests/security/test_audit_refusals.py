"""Refused requests are bounded: the first N a client's minute are written, the rest counted."""

from __future__ import annotations

from autovision.security import AuditLog, read_audit
from autovision.security.audit import RefusalAggregator, verify_log


class Clock:
    def __init__(self, t: float = 600.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_flood_is_written_as_n_lines_and_one_count(tmp_path):
    path = tmp_path / "audit.log"
    clock = Clock()
    agg = RefusalAggregator(AuditLog(path), per_minute=10, clock=clock)
    for i in range(1000):
        clock.t = 600.0 + i * 0.05  # all within one minute
        agg.refused("10.0.0.9", status=401, code="missing_api_key")
    assert len(list(read_audit(path))) == 10
    clock.t = 700.0  # the next minute: the count is written at the next refusal
    agg.refused("10.0.0.7", status=403)
    events = list(read_audit(path))
    aggregate = [e for e in events if e["event"] == "refused.aggregate"]
    assert len(aggregate) == 1 and aggregate[0]["count"] == 990
    assert aggregate[0]["client"] == "10.0.0.9" and aggregate[0]["statuses"] == {"401": 990}
    assert len(events) == 12
    assert verify_log(path).ok


def test_each_client_has_its_own_allowance_and_close_flushes(tmp_path):
    path = tmp_path / "audit.log"
    agg = RefusalAggregator(AuditLog(path), per_minute=3, clock=Clock())
    for _ in range(5):
        agg.refused("a", status=401)
        agg.refused("b", status=429)
    agg.refused(None, status=413)
    assert len(list(read_audit(path))) == 7
    agg.close()
    agg.close()  # nothing left to write
    events = list(read_audit(path))
    counts = {e["client"]: e["count"] for e in events if e["event"] == "refused.aggregate"}
    assert counts == {"a": 2, "b": 2}
    assert len(events) == 9
