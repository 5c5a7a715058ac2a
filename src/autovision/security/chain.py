"""Verifying the audit log's hash chain: the first edited, inserted, deleted or reordered line.

A line is chained when it has ``seq`` and ``prev`` (the SHA-256 of the previous line's bytes,
:data:`GENESIS` for the first line). Lines without them before the first chained line are a
legacy prefix (written before the chain existed): counted, not verifiable. A chain cannot show
a cut-off tail; ``expect_tail`` (a line hash recorded elsewhere) can.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    """The chain hash of one line: SHA-256 of its bytes without the newline."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@dataclass
class Verdict:
    """What :func:`verify_log` found; :meth:`to_dict` is ``audit verify --json``."""

    ok: bool
    lines: int = 0
    legacy: int = 0
    bad_line: int | None = None
    problem: str = ""
    tail_seq: int | None = None
    tail_hash: str | None = None
    anchor_line: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "lines": self.lines,
            "legacy_lines": self.legacy,
            "bad_line": self.bad_line,
            "problem": self.problem or None,
            "tail_seq": self.tail_seq,
            "tail_hash": self.tail_hash,
            "anchor_line": self.anchor_line,
            "notes": self.notes,
        }

    def message(self) -> str:
        if not self.ok:
            return f"audit log: line {self.bad_line}: {self.problem}"
        chained = self.lines - self.legacy
        text = f"audit log: {self.lines} lines, chain intact"
        if self.legacy:
            text += (
                f" ({self.legacy} legacy lines before the chain are not verifiable; "
                f"{chained} chained)"
            )
        return text


@dataclass
class _Line:
    number: int
    raw: bytes
    record: dict[str, Any] | None
    hash: str

    @property
    def seq(self) -> Any:
        return self.record.get("seq") if self.record else None

    @property
    def prev(self) -> Any:
        return self.record.get("prev") if self.record else None

    @property
    def chained(self) -> bool:
        return self.record is not None and "seq" in self.record and "prev" in self.record


def _parse(number: int, raw: bytes) -> _Line:
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        record = None
    return _Line(number, raw, record, line_hash(raw))


def _links(line: _Line, before: _Line | None, *, anywhere: bool = False) -> bool:
    """Whether ``line`` follows ``before`` in the chain (``before`` None: the file's start,
    or, with ``anywhere``, the start of a window of the file that cannot be checked)."""
    if not line.chained:
        return False
    if before is None:
        return anywhere or (line.prev == GENESIS and line.seq == 1)
    expected = before.seq + 1 if before.chained else 1
    return line.prev == before.hash and line.seq == expected


def _diagnose(
    line: _Line, before: _Line | None, before2: _Line | None, after: _Line | None
) -> tuple[int, str]:
    """The line to blame and why, for a ``line`` that does not follow ``before``."""
    n = line.number
    expected = before.seq + 1 if before is not None and before.chained else 1
    prev_ok = line.prev == (before.hash if before is not None else GENESIS)
    if after is not None and _links(after, before):
        if _links(line, after):
            return n, f"reordered: lines {n} and {n + 1} are swapped"
        return n, "inserted: the next line follows the one before this one"
    if before is not None and before2 is not None and _links(line, before2):
        return before.number, "inserted: the line after it follows the one before it"
    if prev_ok:
        return n, f"seq is {line.seq!r}, expected {expected}: edited"
    if line.seq == expected:
        if before is None:
            return n, "its prev is not the genesis value: edited"
        return before.number, f"edited: its hash no longer matches line {n}'s prev"
    if not isinstance(line.seq, int):
        return n, f"seq is {line.seq!r}, not a number: edited"
    if line.seq > expected:
        if after is not None and after.seq == expected:
            return n, f"out of order: seq {line.seq} comes before seq {after.seq} (reordered)"
        missing = line.seq - expected
        return n, (
            f"seq jumps from {expected - 1} to {line.seq}: {missing} line(s) deleted before it"
        )
    return n, f"seq goes back from {expected - 1} to {line.seq}: inserted or reordered"


def _verify_lines(lines: Iterator[tuple[int, bytes]], *, window: bool = False) -> Verdict:
    """Walk numbered lines; ``window``: they are the file's last lines (the first chained
    line's own link cannot be checked)."""
    verdict = Verdict(ok=True)
    before: _Line | None = None
    before2: _Line | None = None
    pending: _Line | None = None  # a line that breaks the chain, waiting for the next one
    started = False

    def fail(number: int, problem: str) -> Verdict:
        verdict.ok, verdict.bad_line, verdict.problem = False, number, problem
        return verdict

    for number, raw in lines:
        line = _parse(number, raw)
        if pending is not None:
            return fail(*_diagnose(pending, before, before2, line))
        verdict.lines += 1
        if line.record is None:
            return fail(number, "not a JSON object: edited or corrupted")
        if not line.chained:
            if started:
                return fail(number, "no chain fields (seq, prev) after the chain began: inserted")
            verdict.legacy += 1
        elif _links(line, before, anywhere=window and before is None):
            started = True
            verdict.tail_seq = line.seq
        else:
            pending = line
            continue
        before2, before = before, line
        verdict.tail_hash = line.hash
    if pending is not None:
        return fail(*_diagnose(pending, before, before2, None))
    return verdict


def _numbered(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\n")


def verify_log(path: str | os.PathLike[str], *, expect_tail: str | None = None) -> Verdict:
    """Walk the whole chain; the first broken line and why, or OK with the line count.

    ``expect_tail``: a line hash recorded earlier (``tail_hash``); the log must still hold
    that line, unchanged: this catches a cut-off tail, which the chain alone cannot.
    """
    path = Path(path)
    if not path.exists():
        verdict = Verdict(ok=True, notes=["no audit log yet"])
    else:
        verdict = _verify_lines(_numbered(path))
    if verdict.ok and expect_tail:
        wanted = expect_tail.strip().lower()
        found = None
        if path.exists():
            found = next((n for n, raw in _numbered(path) if line_hash(raw) == wanted), None)
        if found is None:
            verdict.ok = False
            verdict.bad_line = verdict.lines + 1
            verdict.problem = (
                f"no line has the expected hash {wanted[:16]}...: the log was cut off or "
                "rewritten after that line"
            )
        else:
            verdict.anchor_line = found
            verdict.notes.append(
                f"the expected line is line {found}; {verdict.lines - found} line(s) after it"
            )
    return verdict


def _tail_lines(path: Path, count: int) -> tuple[int, list[bytes]]:
    """The file size and its last ``count`` whole lines (read from the end)."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        data = b""
        pos = size
        while pos > 0 and data.count(b"\n") <= count:
            step = min(64 * 1024, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if pos > 0:
        lines = lines[1:]  # the first piece may be part of a line
    return size, lines[-count:]


def check_tail(
    path: str | os.PathLike[str], *, full_below: int = 8 * 1024 * 1024, tail_lines: int = 1000
) -> tuple[bool, str]:
    """The start-up check: the whole chain if the log is small, else its last lines."""
    path = Path(path)
    try:
        if not path.exists():
            return True, "audit log: empty, a new chain starts"
        if path.stat().st_size <= full_below:
            verdict = verify_log(path)
            return verdict.ok, verdict.message()
        _, lines = _tail_lines(path, tail_lines)
        verdict = _verify_lines(enumerate(lines, start=1), window=True)
    except OSError as exc:
        return False, f"audit log: cannot read it ({exc.strerror or type(exc).__name__})"
    if verdict.ok:
        return True, (
            f"audit log: {verdict.tail_seq} lines, chain intact in the last {verdict.lines} "
            "checked (`autovision audit verify` checks all)"
        )
    where = f"line {verdict.bad_line} of the last {len(lines)} lines"
    return False, f"audit log: {where}: {verdict.problem} (run `autovision audit verify`)"
