"""The prediction log: every served prediction (or a sampled share) recorded off the
response path, queried, exported and purged after a retention period.

The request path only appends a small entry (arrays it already has, the raw image bytes and
the input statistics its preprocessing thread measured) to a bounded queue; a background
writer turns entries into rows and image blobs in batches. A full queue drops the entry and
counts it: logging never slows or fails a prediction.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from autovision.errors import AutovisionError

log = logging.getLogger("autovision.monitoring")

DEFAULT_RETENTION = "30d"
PURGE_EVERY_S = 86400.0
WARN_EVERY_S = 10.0  # at most one "records dropped" warning this often
_STOP = object()


class LogError(AutovisionError):
    """A bad prediction-log argument (duration, model ref)."""


def input_stats(img: Any) -> dict[str, float]:
    """The data report's statistics of a PIL image (brightness, contrast, sharpness...),
    measured on its thumbnail (:func:`autovision.data.quality.analyze`)."""
    from autovision.data.quality import analyze

    return {k: float(v) for k, v in analyze(img).items() if v is not None}


EMBEDDING_PREFIX = "f16:"


def encode_embedding(vector: np.ndarray) -> str:
    """An embedding as stored: ``f16:`` + base64 of little-endian float16 (a quarter of its
    JSON list's size, and ~25x cheaper to write; drift's statistics need no more precision)."""
    raw = np.asarray(vector, dtype="<f2").tobytes()
    return EMBEDDING_PREFIX + base64.b64encode(raw).decode("ascii")


def decode_embedding(value: Any) -> list[float] | None:
    """A stored embedding (``f16:`` string or a plain list) as a list of floats."""
    if isinstance(value, str) and value.startswith(EMBEDDING_PREFIX):
        raw = base64.b64decode(value[len(EMBEDDING_PREFIX) :])
        return np.frombuffer(raw, dtype="<f2").astype(np.float64).tolist()
    return value


def parse_age(text: str | float | timedelta) -> timedelta:
    """``30d``, ``12h``, ``90m`` or seconds -> a timedelta (LogError when invalid)."""
    if isinstance(text, timedelta):
        return text
    from autovision.search.budget import parse_duration

    try:
        return timedelta(seconds=parse_duration(text))
    except AutovisionError:
        raise LogError(f"invalid duration {text!r}: expected one like 30d, 24h or 90m") from None


def new_prediction_id() -> str:
    return "p-" + uuid.uuid4().hex


@dataclass
class Capture:
    """What a request's preprocessing thread keeps for the log, per image: its encoded
    bytes (or raw pixels), its size and its input statistics."""

    images: list[bytes | np.ndarray | None] = field(default_factory=list)
    sizes: list[tuple[int, int] | None] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)

    def add(self, data: bytes | np.ndarray | None, size: tuple[int, int], img: Any) -> None:
        self.images.append(data)
        self.sizes.append(size)
        try:
            self.stats.append(input_stats(img))
        except Exception:  # noqa: BLE001 - statistics must never fail a prediction
            self.stats.append({})


@dataclass
class Entry:
    """One request's predictions as the request path hands them over (no conversion)."""

    time: datetime
    request_id: str
    key_id: str | None
    name: str | None
    model_id: str
    version: int | None
    route: str
    labels: list[str]
    decide: Callable[[np.ndarray], list[list[int]]]
    probs: np.ndarray
    embedding: np.ndarray | None
    latency_ms: float
    capture: Capture | None


class PredictionLogger:
    """Bounded queue + background writer. ``sample()`` draws the ``rate``; ``offer`` never
    blocks (False, counted, when the queue is full); ``close`` flushes what is queued."""

    def __init__(
        self,
        ws: Any,
        *,
        rate: float = 1.0,
        store_images: bool = True,
        queue_limit: int = 1024,
        batch_size: int = 256,
        interval_s: float = 0.5,
        seed: int | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.ws = ws
        self.rate = rate
        self.store_images = store_images
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.written = 0
        self.failed = 0
        self.dropped = 0
        self._on_drop = on_drop
        self._last_warning = -float("inf")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._q: queue.Queue = queue.Queue(maxsize=queue_limit)
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
        self._thread.start()

    def sample(self) -> bool:
        """Whether to log the next request (a ``rate`` draw)."""
        if self.rate >= 1.0:
            return True
        return self.rate > 0 and self._rng.random() < self.rate

    def offer(self, entry: Entry) -> bool:
        """Queue one request's predictions; drops them (counted, warned) when full."""
        try:
            self._q.put_nowait(entry)
            return True
        except queue.Full:
            self._drop(len(entry.probs))
            return False

    def _drop(self, n: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.dropped += n
            warn = now - self._last_warning >= WARN_EVERY_S
            if warn:
                self._last_warning = now
            total = self.dropped
        if self._on_drop is not None:
            self._on_drop(n)
        if warn:
            log.warning("prediction log queue full: %d record(s) dropped so far", total)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far is written (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            try:
                self._q.put(_STOP, timeout=timeout)
            except queue.Full:
                log.warning("prediction log writer stuck: queued records lost")
                return
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                self._q.task_done()
                return
            batch = [item]
            deadline = time.monotonic() + self.interval_s
            stop = False
            while sum(len(e.probs) for e in batch) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._q.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    self._q.task_done()
                    break
                batch.append(item)
            try:
                self.write(batch)
            finally:
                for _ in batch:
                    self._q.task_done()
            if stop:
                return

    def write(self, entries: list[Entry]) -> None:
        """Rows and image blobs of ``entries``; a failure is logged and counted, never raised."""
        from sqlalchemy import insert

        from autovision.workspace.db import PredictionLogRow

        n = sum(len(e.probs) for e in entries)
        try:
            rows = [row for e in entries for row in self._rows(e)]
            with self.ws.Session.begin() as s:
                s.execute(insert(PredictionLogRow), rows)
            self.written += len(rows)
        except Exception as exc:  # noqa: BLE001 - a failed write must not stop the writer
            self.failed += n
            log.error("%d prediction log records not written: %s", n, exc)

    def _rows(self, e: Entry) -> list[dict[str, Any]]:
        probs = np.asarray(e.probs, dtype=np.float32)
        decided = e.decide(probs)
        cap = e.capture
        # vectorised rounding: a Python loop over 1,280 floats per image is the writer's cost
        probs_lists = np.round(probs.astype(np.float64), 6).tolist()
        embs = None if e.embedding is None else [encode_embedding(v) for v in e.embedding]
        rows = []
        for i, row in enumerate(probs):
            order = np.argsort(-row, kind="stable")
            top = int(order[0])
            second = float(row[order[1]]) if len(order) > 1 else 0.0
            size = cap.sizes[i] if cap is not None and i < len(cap.sizes) else None
            rows.append(
                {
                    "id": new_prediction_id(),
                    "time": e.time,
                    "request_id": e.request_id,
                    "key_id": e.key_id,
                    "name": e.name or "",
                    "model_id": e.model_id,
                    "version": e.version,
                    "route": e.route,
                    "instance": i,
                    "probs": probs_lists[i],
                    "labels": [e.labels[j] for j in decided[i]],
                    "top_label": e.labels[top],
                    "confidence": float(row[top]),
                    "margin": float(row[top]) - second,
                    "latency_ms": e.latency_ms,
                    "width": size[0] if size else None,
                    "height": size[1] if size else None,
                    "stats": cap.stats[i] if cap is not None and i < len(cap.stats) else {},
                    "embedding": embs[i] if embs is not None else None,
                    "image_sha256": self._store(cap.images[i]) if cap is not None else None,
                }
            )
        return rows

    def _store(self, data: bytes | np.ndarray | None) -> str | None:
        if not self.store_images or data is None:
            return None
        if isinstance(data, np.ndarray):  # raw pixels (v2 "pixels"): kept as PNG
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(data), "RGB").save(buf, format="PNG")
            data = buf.getvalue()
        return self.ws.blobs.put(data)


# ---- queries -------------------------------------------------------------------------------


def record_dict(r: Any) -> dict[str, Any]:
    """A prediction-log row as JSON-ready data."""
    return {
        "id": r.id,
        "time": _iso(r.time),
        "request_id": r.request_id,
        "key_id": r.key_id,
        "name": r.name,
        "model_id": r.model_id,
        "version": r.version,
        "route": r.route,
        "instance": r.instance,
        "probs": r.probs,
        "labels": r.labels,
        "top_label": r.top_label,
        "confidence": r.confidence,
        "margin": r.margin,
        "latency_ms": r.latency_ms,
        "width": r.width,
        "height": r.height,
        "stats": r.stats,
        "embedding": decode_embedding(r.embedding),
        "image_sha256": r.image_sha256,
        "review_status": r.review_status,
        "review_labels": r.review_labels,
        "reviewer": r.reviewer,
        "reviewed_at": _iso(r.reviewed_at),
        "feedback": r.feedback,
    }


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def _since(since: str | float | timedelta | datetime | None) -> datetime | None:
    if since is None or since == "":
        return None
    if isinstance(since, datetime):
        return since
    return datetime.now(UTC) - parse_age(since)


def query(
    ws: Any,
    name: str | None = None,
    *,
    since: str | float | timedelta | datetime | None = None,
    label: str | None = None,
    below: float | None = None,
    limit: int | None = None,
    model_id: str | None = None,
    version: int | None = None,
) -> list[dict[str, Any]]:
    """Logged predictions, newest first: of a model name (every version), a ``model_id``
    or a ``version`` of ``name``; since a time or age; with ``label`` among the decided
    labels; with top-1 confidence under ``below``."""
    from sqlalchemy import select

    from autovision.workspace.db import PredictionLogRow as R

    q = select(R)
    if name is not None:
        q = q.where(R.name == name)
    if model_id is not None:
        q = q.where(R.model_id == model_id)
    if version is not None:
        q = q.where(R.version == version)
    start = _since(since)
    if start is not None:
        q = q.where(R.time >= start)
    if below is not None:
        q = q.where(R.confidence < below)
    q = q.order_by(R.time.desc(), R.instance)
    if limit is not None and label is None:
        q = q.limit(limit)
    out = []
    with ws.Session() as s:
        for r in s.scalars(q):
            if label is not None and label not in (r.labels or []):
                continue
            out.append(record_dict(r))
            if limit is not None and len(out) >= limit:
                break
    return out


def resolve_scope(ws: Any, ref: str) -> dict[str, Any]:
    """A model ref -> query arguments: ``NAME`` every version's records, ``NAME@3`` /
    ``NAME@alias`` one version's, a model id that model's."""
    from autovision.versions.refs import check_model_name
    from autovision.versions.store import resolve
    from autovision.workspace.db import ModelRow

    text = (ref or "").strip()
    if "@" not in text:
        with ws.Session() as s:
            if s.get(ModelRow, text) is not None and not _has_name(ws, text):
                return {"model_id": text}
        try:
            return {"name": check_model_name(text)}
        except AutovisionError as exc:
            raise LogError(str(exc)) from None
    try:
        return {"model_id": resolve(ws, text).id}
    except AutovisionError as exc:
        raise LogError(str(exc)) from None


def _has_name(ws: Any, name: str) -> bool:
    from sqlalchemy import select

    from autovision.workspace.db import ModelVersionRow, PredictionLogRow

    with ws.Session() as s:
        for table in (ModelVersionRow, PredictionLogRow):
            if s.scalar(select(table.name).where(table.name == name).limit(1)) is not None:
                return True
    return False


def export_jsonl(ws: Any, out: Any, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` as JSON lines to the path ``out``; the number written."""
    from pathlib import Path

    n = 0
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
            n += 1
    tmp.replace(path)
    return n


# ---- retention -----------------------------------------------------------------------------


def purge(
    ws: Any, older_than: str | float | timedelta = DEFAULT_RETENTION, *, audit_empty: bool = True
) -> dict[str, Any]:
    """Delete records older than ``older_than`` and their images; a blob still used by a
    dataset version or a newer record is kept. Audited (``logs.purge``; a purge that found
    nothing only with ``audit_empty``: the server's daily runs)."""
    from sqlalchemy import delete, select

    from autovision.security.audit import audit_event
    from autovision.workspace.db import ItemRow
    from autovision.workspace.db import PredictionLogRow as R

    age = parse_age(older_than)
    cutoff = datetime.now(UTC) - age
    with ws.Session.begin() as s:
        shas = set(
            s.scalars(select(R.image_sha256).where(R.time < cutoff, R.image_sha256.is_not(None)))
        )
        records = s.execute(delete(R).where(R.time < cutoff)).rowcount or 0
        kept = set()
        for chunk in _chunks(sorted(shas), 500):
            kept |= set(s.scalars(select(ItemRow.sha256).where(ItemRow.sha256.in_(chunk))))
            kept |= set(s.scalars(select(R.image_sha256).where(R.image_sha256.in_(chunk))))
    deleted = sum(1 for sha in sorted(shas - kept) if ws.blobs.delete(sha))
    result = {
        "older_than_s": age.total_seconds(),
        "cutoff": cutoff.isoformat(),
        "records": records,
        "images_deleted": deleted,
        "images_kept": len(shas & kept),
    }
    if records or audit_empty:
        audit_event(ws, "logs.purge", **result)
    return result


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class RetentionThread:
    """Purges records older than ``retention`` at start and then every ``every_s``."""

    def __init__(self, ws: Any, retention: str | timedelta, every_s: float = PURGE_EVERY_S):
        self.ws = ws
        self.retention = parse_age(retention)
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                result = purge(self.ws, self.retention, audit_empty=False)
                if result["records"]:
                    log.info(
                        "prediction log: purged %d record(s), %d image(s) older than %s",
                        result["records"],
                        result["images_deleted"],
                        self.retention,
                    )
            except Exception as exc:  # noqa: BLE001 - retention must not stop the server
                log.error("prediction log purge failed: %s", exc)
            self.runs += 1
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
