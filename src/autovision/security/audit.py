"""The audit log: one JSON line per action, hash-chained so that edits show.

Each line carries ``seq`` (1, 2, ...) and ``prev``, the SHA-256 of the previous line's exact
bytes (:data:`GENESIS` for the first line). A writer takes an exclusive ``flock`` on the file,
reads only the last line (seeking from the end), and appends with a single ``write`` on an
``O_APPEND`` file created ``0600``: several server processes and CLI commands keep one valid
chain. Lines written before the chain (no ``seq``/``prev``) are a legacy prefix the chain
starts after. A chain shows edited, inserted, deleted and reordered lines; it cannot show a
cut-off tail, or a rewrite of everything after some line by someone who recomputes the hashes:
record the tail hash elsewhere and check it with ``autovision audit verify --expect-tail``.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: one process per log
    fcntl = None  # type: ignore[assignment]

from autovision.security.chain import GENESIS, Verdict, check_tail, line_hash, verify_log

__all__ = [
    "GENESIS",
    "AuditLog",
    "RefusalAggregator",
    "Verdict",
    "acting_as",
    "actor",
    "audit_event",
    "audited",
    "check_tail",
    "line_hash",
    "read_audit",
    "select_events",
    "verify_log",
]

log = logging.getLogger("autovision.audit")

_TAIL_BLOCK = 4096


def _last_line(fd: int, size: int) -> bytes:
    """The file's last line (without its newline), read backwards from the end."""
    end = size
    if end and os.pread(fd, 1, end - 1) == b"\n":
        end -= 1
    chunks: list[bytes] = []
    pos = end
    while pos > 0:
        step = min(_TAIL_BLOCK, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            chunks.append(chunk[cut + 1 :])
            break
        chunks.append(chunk)
    return b"".join(reversed(chunks))


def _chain_of(line: bytes) -> int | None:
    """The ``seq`` of a chained line; None for a legacy (unchained) or unreadable line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if isinstance(seq, int) and "prev" in record else None


class AuditLog:
    """``AuditLog(ws.audit_log_path).write("refused", status=401, reason=...)``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one chained line (under an exclusive lock on the file); returns it."""
        record: dict[str, Any] = {"time": datetime.now(UTC).isoformat(), "event": event, **fields}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                lead = b""
                if size == 0:
                    seq, prev = 1, GENESIS
                else:
                    tail = _last_line(fd, size)
                    last_seq = _chain_of(tail)
                    seq, prev = (last_seq or 0) + 1, line_hash(tail)
                    if os.pread(fd, 1, size - 1) != b"\n":
                        lead = b"\n"  # a torn last line: start ours on a line of its own
                record["seq"], record["prev"] = seq, prev
                line = json.dumps(record, default=str, ensure_ascii=False).encode("utf-8")
                os.write(fd, lead + line + b"\n")
            finally:
                os.close(fd)  # releases the lock
        return record


def read_audit(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every event of an audit log, oldest first (nothing if the log does not exist)."""
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# ---- actions: who did what, and how it ended ----------------------------------------------

_ACTOR: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "autovision_audit_actor", default=None
)


def local_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return None


def actor() -> dict[str, Any]:
    """Who acts now: the API key set by :func:`acting_as` (the server), else the local user."""
    who = _ACTOR.get()
    return dict(who) if who is not None else {"client": "cli", "user": local_user()}


@contextmanager
def acting_as(**who: Any) -> Iterator[None]:
    """Attribute the audit lines written inside to ``who`` (e.g. ``key_id=..., client=...``)."""
    token = _ACTOR.set(who)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def _log_path(where: Any) -> Path:
    if isinstance(where, str | os.PathLike):
        return Path(where)
    if hasattr(where, "audit_log_path"):
        return Path(where.audit_log_path)
    return Path(where.ws.audit_log_path)  # an object holding a workspace (the server state)


def audit_event(
    ws: Any, action: str, outcome: str = "ok", *, event: str | None = None, **details: Any
) -> dict[str, Any] | None:
    """Append ``action`` (``dataset.import``, ``alias.move``, ``console.login``...) with who
    did it (:func:`actor`) and its ``outcome`` (``ok``, ``error``, with ``error=message``).

    ``ws``: a workspace, a log path, or an object with ``.ws``; ``event`` defaults to the
    action's first part (``dataset``). Never raises: a failed write is logged.
    """
    try:
        path = _log_path(ws)
    except AttributeError:  # no workspace (a stand-in object): nowhere to write
        log.debug("no audit log for %s: %s has no workspace", action, type(ws).__name__)
        return None
    try:
        return AuditLog(path).write(
            event or action.split(".")[0],
            action=action,
            outcome=outcome,
            **{**actor(), **details},
        )
    except OSError as exc:
        log.error("cannot write the audit log: %s", exc.strerror or type(exc).__name__)
        return None


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 500 else text[:500] + "..."


def audited(
    action: str,
    *,
    args: tuple[str, ...] = (),
    result: Callable[[Any], dict[str, Any]] | None = None,
    after: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    start: bool = False,
    ws: str = "ws",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Audit each call of a library function: one line with ``args`` (by name), the outcome,
    ``result(return value)`` and ``after(arguments)`` (details known once it ran); ``start``
    also writes ``ACTION.start`` before it runs. ``ws`` names the workspace argument."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*a: Any, **kw: Any) -> Any:
            bound = sig.bind_partial(*a, **kw)
            where = bound.arguments.get(ws)
            details = {k: _plain(bound.arguments[k]) for k in args if k in bound.arguments}
            if start:
                audit_event(where, f"{action}.start", **details)
            began = time.monotonic()
            name = f"{action}.end" if start else action
            try:
                value = fn(*a, **kw)
            except BaseException as exc:
                outcome = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
                audit_event(
                    where,
                    name,
                    outcome,
                    error=_error_message(exc),
                    error_type=type(exc).__name__,
                    seconds=round(time.monotonic() - began, 3),
                    **details,
                    **_summary(after, bound.arguments),
                )
                raise
            seconds = round(time.monotonic() - began, 3)
            extra = {**_summary(after, bound.arguments), **_summary(result, value)}
            audit_event(where, name, seconds=seconds, **{**details, **extra})
            return value

        return call

    return wrap


def _summary(fn: Callable[[Any], dict[str, Any]] | None, value: Any) -> dict[str, Any]:
    if fn is None:
        return {}
    try:
        return {k: _plain(v) for k, v in fn(value).items()}
    except Exception:  # noqa: BLE001 - a summary must never fail the action it describes
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return list(value)
    return str(value)


# ---- refused requests: bounded -------------------------------------------------------------


class RefusalAggregator:
    """The first ``per_minute`` refusals of a client in a minute are written one by one; the
    rest are counted and written as one ``refused.aggregate`` line when the minute rolls over
    (at the client's next refusal, anyone's refusal in a later minute, or :meth:`close`)."""

    MAX_CLIENTS = 10_000

    def __init__(
        self, audit: AuditLog, per_minute: int = 10, clock: Callable[[], float] = time.time
    ) -> None:
        self.audit = audit
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._minute: int | None = None
        self._clients: dict[str, dict[str, Any]] = {}

    def refused(self, host: str | None, /, **fields: Any) -> None:
        """Record one refused request from the client ``host`` (its port is not counted)."""
        now = self.clock()
        minute = int(now // 60)
        key = host or "unknown"
        flush: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            if self._minute is not None and minute != self._minute:
                flush, self._clients = list(self._clients.items()), {}
            self._minute = minute
            entry = self._clients.get(key)
            if entry is None:
                if len(self._clients) >= self.MAX_CLIENTS:
                    key = "other"
                entry = self._clients.setdefault(
                    key, {"minute": minute, "written": 0, "count": 0, "statuses": {}}
                )
            write = entry["written"] < self.per_minute
            if write:
                entry["written"] += 1
            else:
                entry["count"] += 1
                status = str(fields.get("status"))
                entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
                entry.setdefault("first", now)
                entry["last"] = now
        self._flush(flush)
        if write:
            self.audit.write("refused", **fields)

    def close(self) -> None:
        """Write what is still counted (at shutdown)."""
        with self._lock:
            flush, self._clients = list(self._clients.items()), {}
        self._flush(flush)

    def _flush(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        for client, entry in entries:
            if not entry["count"]:
                continue
            self.audit.write(
                "refused.aggregate",
                client=client,
                count=entry["count"],
                statuses=entry["statuses"],
                minute=datetime.fromtimestamp(entry["minute"] * 60, UTC).isoformat(),
                first=datetime.fromtimestamp(entry["first"], UTC).isoformat(),
                last=datetime.fromtimestamp(entry["last"], UTC).isoformat(),
                note=f"{entry['count']} more refusals after the first {self.per_minute}",
            )


# ---- reading -------------------------------------------------------------------------------


def select_events(
    path: str | os.PathLike[str],
    *,
    since_s: float | None = None,
    event: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Events of the last ``since_s`` seconds whose event or action is ``event`` (or starts
    with ``event.``), oldest first; the newest ``limit``. Unreadable lines are skipped."""
    cutoff = datetime.now(UTC).timestamp() - since_s if since_s is not None else None
    picked: list[dict[str, Any]] = []
    path = Path(path)
    if not path.exists():
        return picked
    with path.open("rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
                when = datetime.fromisoformat(record["time"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if cutoff is not None and when < cutoff:
                continue
            if event and not _matches(record, event):
                continue
            picked.append(record)
            if limit and len(picked) > limit:
                picked.pop(0)
    return picked


def _matches(record: dict[str, Any], name: str) -> bool:
    names = (str(record.get("event", "")), str(record.get("action", "")))
    return any(n == name or n.startswith(name + ".") for n in names)
