"""The ``jobs`` and ``job_events`` tables: short transactions, safe for several processes.

The web server and each worker write the same database. Every write here is one statement
(or one short transaction that writes first), state changes are conditional on the status
they expect (``UPDATE ... WHERE status IN (...)``), and an event's number is taken inside its
own ``INSERT ... SELECT max(seq) + 1``, so two writers never need to read, think and write.
SQLite runs in WAL mode with a busy timeout (see :func:`autovision.workspace.db.get_engine`).
"""

from __future__ import annotations

import json
import math
import random
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from autovision.errors import JobError
from autovision.workspace.db import JobEventRow, JobRow, utcnow

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
INTERRUPTED, CANCELLED = "interrupted", "cancelled"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, INTERRUPTED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)  # a worker is (or should be) on it
FINAL = (DONE, FAILED, CANCELLED)
_RETRIES = 30


def new_job_id() -> str:
    return f"job-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def aware(when: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=UTC)


def aware_iso(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def plain(value: Any, *, strict: bool = False) -> Any:
    """A JSON-safe copy (numpy scalars to numbers, NaN and infinities to None): what a
    browser's ``JSON.parse`` reads. Other objects become their text, or (``strict``) a
    TypeError."""

    def fix(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [fix(x) for x in v]
        return v

    def other(v: Any) -> Any:
        if hasattr(v, "item"):  # numpy scalar
            return v.item()
        if hasattr(v, "tolist"):
            return v.tolist()
        if strict:
            raise TypeError(f"{type(v).__name__} is not a JSON value")
        return str(v)

    return fix(json.loads(json.dumps(value, default=other, allow_nan=True)))


def _row_dict(r: JobRow) -> dict[str, Any]:
    def iso(d: datetime | None) -> str | None:
        d = aware(d)
        return d.isoformat() if d else None

    return {
        "id": r.id,
        "kind": r.kind,
        "status": r.status,
        "params": dict(r.params or {}),
        "user": r.user,
        "created_at": iso(r.created_at),
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "heartbeat_at": iso(r.heartbeat_at),
        "pid": r.pid,
        "host": r.host,
        "attempts": r.attempts,
        "result": r.result,
        "error": r.error,
    }


def create(ws: Any, kind: str, params: dict[str, Any], user: str | None) -> str:
    job_id = new_job_id()
    with ws.Session.begin() as s:
        s.add(
            JobRow(id=job_id, kind=kind, status=QUEUED, params=plain(params), user=user, attempts=0)
        )
    return job_id


def get(ws: Any, job_id: str) -> dict[str, Any]:
    with ws.Session() as s:
        row = s.get(JobRow, job_id)
        if row is None:
            raise JobError(f"no job {job_id!r} in {ws.root}")
        return _row_dict(row)


def rows(ws: Any, *, kind: str | None = None, statuses: Iterable[str] | None = None) -> list:
    """Jobs as dicts, newest first."""
    q = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc())
    if kind is not None:
        q = q.where(JobRow.kind == kind)
    if statuses is not None:
        q = q.where(JobRow.status.in_(list(statuses)))
    with ws.Session() as s:
        return [_row_dict(r) for r in s.scalars(q)]


def set_fields(
    ws: Any,
    job_id: str,
    *,
    when: Iterable[str] | None = None,
    expect_pid: int | None = None,
    **values: Any,
) -> bool:
    """Update a job's columns if its status is one of ``when`` (any status when None) and,
    with ``expect_pid``, the row still names that worker; whether it did."""
    q = update(JobRow).where(JobRow.id == job_id)
    if when is not None:
        q = q.where(JobRow.status.in_(list(when)))
    if expect_pid is not None:
        q = q.where(JobRow.pid == expect_pid)
    if "result" in values:
        values["result"] = plain(values["result"])
    with ws.Session.begin() as s:
        return s.execute(q.values(**values)).rowcount > 0


def this_host() -> str:
    return socket.gethostname()


def claim(ws: Any, job_id: str, pid: int) -> int | None:
    """A worker takes a queued job: running, with its pid; its attempt number (None when the
    job is no longer queued, e.g. cancelled before the worker started)."""
    now = utcnow()
    with ws.Session.begin() as s:
        done = s.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == QUEUED)
            .values(
                status=RUNNING,
                pid=pid,
                host=this_host(),
                heartbeat_at=now,
                started_at=func.coalesce(JobRow.started_at, now),
                attempts=JobRow.attempts + 1,
            )
        ).rowcount
        if not done:
            return None
        return s.scalar(select(JobRow.attempts).where(JobRow.id == job_id))


def append_event(ws: Any, job_id: str, event: dict[str, Any]) -> int:
    """Append one event; its ``seq`` (1, 2, ... within the job). The number is taken inside
    the insert; a clash (another writer of the same job in between) is retried."""
    body = plain(event)
    for attempt in range(_RETRIES):
        now = utcnow()
        sel = select(
            literal(job_id),
            func.coalesce(func.max(JobEventRow.seq), 0) + 1,
            literal(now, JobEventRow.at.type),
            literal(body, JobEventRow.event.type),
        ).where(JobEventRow.job_id == job_id)
        stmt = insert(JobEventRow).from_select(["job_id", "seq", "at", "event"], sel)
        try:
            with ws.Session.begin() as s:
                s.execute(stmt)
                return int(
                    s.scalar(select(func.max(JobEventRow.seq)).where(JobEventRow.job_id == job_id))
                )
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
            time.sleep(random.uniform(0.005, 0.05))
    raise AssertionError("unreachable")  # pragma: no cover


def events(ws: Any, job_id: str, after_seq: int = 0, limit: int | None = None) -> list:
    """Events with ``seq > after_seq``, oldest first: ``{"seq", "at", **event}``."""
    q = (
        select(JobEventRow)
        .where(JobEventRow.job_id == job_id, JobEventRow.seq > after_seq)
        .order_by(JobEventRow.seq)
    )
    if limit is not None:
        q = q.limit(limit)
    with ws.Session() as s:
        return [
            {**dict(r.event or {}), "seq": r.seq, "at": aware(r.at).isoformat()}
            for r in s.scalars(q)
        ]
