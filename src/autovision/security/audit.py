"""The append-only audit log: one JSON line per admin action or refused request.

Each event is written with a single ``write`` on a file opened with ``O_APPEND`` (and
created ``0600``), so concurrent writers, including several server processes, never
interleave or overwrite lines.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """``AuditLog(ws.audit_log_path).write("refused", status=401, reason=...)``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"time": datetime.now(UTC).isoformat(), "event": event, **fields}
        line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
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
