"""Usage records, written as the work happens: one per training run (:class:`TrainRecorder`)
and one per served model per flush window (:class:`ServeRecorder`), in ``usage_records``.

CPU time comes from ``getrusage``: ``RUSAGE_SELF`` (every thread of this process) plus
``RUSAGE_CHILDREN`` (child processes once they were waited for: the image cache's and the
importer's worker pools are joined by their ``with`` blocks). A child that was never waited
for, or a grandchild its parent did not wait for, is not counted. ``ru_maxrss`` is a peak
over the process's (or its largest reaped child's) whole life, not only over the run.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
import random
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

log = logging.getLogger("autovision.usage")

NODES = 1  # a training run uses one machine: Vertex's node-hours are wall hours x nodes
HIST_LO_S = 1e-5  # latency histogram: log buckets of ratio HIST_BASE from 10 us
HIST_BASE = 1.05  # a value read back from its bucket is within 2.5 % of the true one
RESERVOIR = 4096  # latencies kept per model per window; percentiles are exact below this

F = TypeVar("F", bound=Callable[..., Any])


# ---- storage of records ------------------------------------------------------------------


def write_record(
    ws: Any,
    kind: str,
    subject: str,
    started_at: datetime,
    ended_at: datetime,
    data: dict[str, Any],
) -> None:
    from autovision.workspace.db import UsageRecordRow

    with ws.Session.begin() as s:
        s.add(
            UsageRecordRow(
                kind=kind, subject=subject, started_at=started_at, ended_at=ended_at, data=data
            )
        )


def read_records(
    ws: Any, kind: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Records (oldest first) of ``kind`` that ended at or after ``since``."""
    from sqlalchemy import select

    from autovision.workspace.db import UsageRecordRow

    q = select(UsageRecordRow).order_by(UsageRecordRow.ended_at, UsageRecordRow.id)
    if kind is not None:
        q = q.where(UsageRecordRow.kind == kind)
    if since is not None:
        q = q.where(UsageRecordRow.ended_at >= since)
    with ws.Session() as s:
        return [
            {
                "id": r.id,
                "kind": r.kind,
                "subject": r.subject,
                "started_at": _aware(r.started_at).isoformat(),
                "ended_at": _aware(r.ended_at).isoformat(),
                "data": dict(r.data or {}),
            }
            for r in s.scalars(q)
        ]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)  # SQLite drops the zone


# ---- process counters --------------------------------------------------------------------

_RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds and peak RSS of this process and its reaped children, at one moment."""

    wall: float
    self_cpu: float
    children_cpu: float
    self_maxrss: int
    children_maxrss: int

    @classmethod
    def take(cls) -> Snapshot:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            wall=time.monotonic(),
            self_cpu=me.ru_utime + me.ru_stime,
            children_cpu=kids.ru_utime + kids.ru_stime,
            self_maxrss=me.ru_maxrss * _RSS_UNIT,
            children_maxrss=kids.ru_maxrss * _RSS_UNIT,
        )


# ---- training runs -----------------------------------------------------------------------

_current: contextvars.ContextVar[TrainRecorder | None] = contextvars.ContextVar(
    "autovision_train_recorder", default=None
)


def current_train() -> TrainRecorder | None:
    """The recorder of the training run in progress (to :meth:`TrainRecorder.note` facts)."""
    return _current.get()


class TrainRecorder:
    """Context manager around one training run: on exit (also on failure) writes one
    ``train`` record with wall and CPU seconds, node-hours, peak memory, GPU seconds (wall
    seconds x GPUs used, as noted by the run; 0 on CPU), and what :meth:`finish` was told."""

    def __init__(self, ws: Any, dataset: str) -> None:
        self.ws = ws
        self.facts: dict[str, Any] = {"dataset": dataset, "gpus": 0, "device": "cpu"}
        self.record: dict[str, Any] | None = None

    def note(self, **facts: Any) -> None:
        self.facts.update(facts)

    def finish(self, result: Any) -> None:
        """Take the model, dataset, trials and stop reason from a ``TrainResult``."""
        self.note(
            model=result.model,
            dataset=f"{result.dataset}@{result.dataset_version}",
            trials=result.trials,
            stop_reason=result.stop_reason,
            run_id=result.run_id,
        )

    def __enter__(self) -> TrainRecorder:
        self._started_at = datetime.now(UTC)
        self._start = Snapshot.take()
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        end = Snapshot.take()
        _current.reset(self._token)
        wall = end.wall - self._start.wall
        self_cpu = end.self_cpu - self._start.self_cpu
        children_cpu = end.children_cpu - self._start.children_cpu
        gpus = int(self.facts.get("gpus") or 0)
        data = {
            "model": None,
            "trials": None,
            "stop_reason": None,
            "run_id": None,
            **self.facts,
            "outcome": "ok" if exc is None else "failed",
            "wall_s": round(wall, 3),
            "cpu_s": round(self_cpu + children_cpu, 3),
            "cpu_self_s": round(self_cpu, 3),
            "cpu_children_s": round(children_cpu, 3),
            "nodes": NODES,
            "node_hours": round(wall / 3600.0 * NODES, 6),
            "peak_rss_bytes": max(end.self_maxrss, end.children_maxrss),
            "peak_rss_self_bytes": end.self_maxrss,
            "peak_rss_children_bytes": end.children_maxrss,
            "gpu_s": round(wall * gpus, 3),
        }
        if exc is not None:
            data["stop_reason"] = data["stop_reason"] or "FAILED"
            data["error"] = f"{type(exc).__name__}: {exc}"[:500]
        self.record = data
        subject = data.get("run_id") or data.get("model") or str(data["dataset"])
        try:
            write_record(self.ws, "train", subject, self._started_at, datetime.now(UTC), data)
        except Exception as err:  # noqa: BLE001 - a usage record never fails the run itself
            log.warning("usage record of the training run not written: %s", err)


def recorded_train(fn: F) -> F:
    """Decorator for ``train(ws, dataset_ref, ...)``: the call runs inside a
    :class:`TrainRecorder` that :meth:`~TrainRecorder.finish` es with its result."""

    @functools.wraps(fn)
    def call(ws: Any, dataset_ref: str, *args: Any, **kwargs: Any) -> Any:
        with TrainRecorder(ws, str(dataset_ref)) as rec:
            result = fn(ws, dataset_ref, *args, **kwargs)
            rec.finish(result)
            return result

    return call  # type: ignore[return-value]


# ---- serving -----------------------------------------------------------------------------


def bucket(seconds: float) -> int:
    """Index of the latency histogram bucket holding ``seconds``."""
    s = min(max(seconds, HIST_LO_S), 1e4)
    return max(0, math.ceil(math.log(s / HIST_LO_S) / math.log(HIST_BASE) - 1e-9))


def bucket_value(index: int) -> float:
    """The geometric middle of a bucket (its upper bound for bucket 0)."""
    return HIST_LO_S * HIST_BASE ** max(index - 0.5, 0)


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank: a value that was observed."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def hist_percentile(counts: dict[int, int], q: float) -> float | None:
    total = sum(counts.values())
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(q / 100.0 * total)), 0
    for index in sorted(counts):
        seen += counts[index]
        if seen >= rank:
            return bucket_value(index)
    return None  # pragma: no cover - the loop reaches the rank


@dataclass
class _Window:
    """One model's observations since the last flush."""

    requests: int = 0
    images: int = 0
    seen: int = 0
    sample: list[float] = field(default_factory=list)  # a uniform reservoir of latencies
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, images: int, seconds: float, rng: random.Random, keep: int) -> None:
        self.requests += 1
        self.images += images
        self.seen += 1
        if len(self.sample) < keep:
            self.sample.append(seconds)
        else:  # Algorithm R: every latency has the same chance to be kept
            j = rng.randrange(self.seen)
            if j < keep:
                self.sample[j] = seconds
        b = bucket(seconds)
        self.hist[b] = self.hist.get(b, 0) + 1


class ServeRecorder:
    """Per served model: requests, predictions (images), request latencies; every
    ``flush_s`` seconds (and at :meth:`close`) one ``serve`` record per model that answered
    in the window. The server process's CPU time over the window, less what a shadow
    challenger measured for itself (:meth:`charge`; it gets its own ``serve`` record with
    ``"shadow": true``), is shared among the models in proportion to their images (CPU of a
    window in which nothing was answered is dropped).
    """

    def __init__(
        self, ws: Any, *, flush_s: float = 60.0, keep: int = RESERVOIR, seed: int = 0
    ) -> None:
        self.ws = ws
        self.flush_s = flush_s
        self.keep = keep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._shadow: dict[str, list[float]] = {}  # challenger id -> [cpu_s, images, batches]
        self._since = (datetime.now(UTC), Snapshot.take())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin the first window now (after the models were loaded) and flush periodically."""
        with self._lock:
            self._since = (datetime.now(UTC), Snapshot.take())
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="usage-flush", daemon=True)
            self._thread.start()

    def observe(self, model: str, images: int, seconds: float) -> None:
        """One answered request of ``images`` images that took ``seconds``."""
        with self._lock:
            w = self._windows.get(model)
            if w is None:
                w = self._windows[model] = _Window()
            w.add(images, seconds, self._rng, self.keep)

    def charge(self, model: str, cpu_s: float, images: int = 0) -> None:
        """CPU seconds a shadow challenger's threads spent (``images``: predicted in that
        work; 0 for its preprocessing): not the champions'."""
        with self._lock:
            acc = self._shadow.setdefault(model, [0.0, 0, 0])
            acc[0] += cpu_s
            if images:
                acc[1] += images
                acc[2] += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def flush(self) -> list[dict[str, Any]]:
        """Close the window: write one record per model that answered in it; return them."""
        with self._flush_lock:
            with self._lock:
                windows, self._windows = self._windows, {}
                shadow, self._shadow = self._shadow, {}
                started_at, start = self._since
                ended_at, end = datetime.now(UTC), Snapshot.take()
                self._since = (ended_at, end)
            records = list(_records(windows, started_at, ended_at, start, end, shadow))
            for model, data in records:
                try:
                    write_record(self.ws, "serve", model, started_at, ended_at, data)
                except Exception as err:  # noqa: BLE001 - the server keeps serving
                    log.warning("usage record of %s not written: %s", model, err)
            return [data for _, data in records]

    def close(self) -> list[dict[str, Any]]:
        """Stop the periodic flush and write the last window (at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        return self.flush()


def _records(
    windows: dict[str, _Window],
    started_at: datetime,
    ended_at: datetime,
    start: Snapshot,
    end: Snapshot,
    shadow: dict[str, list[float]] | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    total = sum(w.images for w in windows.values())
    process_cpu = (end.self_cpu - start.self_cpu) + (end.children_cpu - start.children_cpu)
    shadow_cpu = sum(acc[0] for acc in (shadow or {}).values())
    cpu = max(process_cpu - shadow_cpu, 0.0)  # what the champions share
    window_s = (ended_at - started_at) / timedelta(seconds=1)
    for model, (spent, images, batches) in sorted((shadow or {}).items()):
        yield (
            model,
            {
                "model": model,
                "shadow": True,
                "requests": int(batches),
                "predictions": int(images),
                "window_s": round(window_s, 3),
                "cpu_s_window": round(process_cpu, 4),
                "cpu_s": round(spent, 4),
                "cpu_s_per_1000": round(spent / images * 1000, 4) if images else None,
                "p50_ms": None,
                "p99_ms": None,
                "latency_hist": {"lo_s": HIST_LO_S, "base": HIST_BASE, "counts": {}},
            },
        )
    for model, w in sorted(windows.items()):
        if w.requests == 0:
            continue
        share = w.images / total if total else 0.0
        sample = sorted(w.sample)
        yield (
            model,
            {
                "model": model,
                "requests": w.requests,
                "predictions": w.images,
                "window_s": round(window_s, 3),
                "cpu_s_window": round(cpu, 4),
                "cpu_s_shadow": round(shadow_cpu, 4),
                "cpu_share": round(share, 6),
                "cpu_s": round(cpu * share, 4),
                "cpu_s_per_1000": round(cpu * share / w.images * 1000, 4) if w.images else None,
                "p50_ms": round(nearest_rank(sample, 50) * 1000, 3),
                "p99_ms": round(nearest_rank(sample, 99) * 1000, 3),
                "latency_exact": w.seen <= len(sample),
                "latency_hist": {
                    "lo_s": HIST_LO_S,
                    "base": HIST_BASE,
                    "counts": {str(k): v for k, v in sorted(w.hist.items())},
                },
            },
        )
