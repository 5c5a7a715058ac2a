"""The shadow challenger (``autovision serve NAME@production --shadow NAME@challenger``).

After the champion has answered a request, :meth:`ShadowRunner.offer` hands the same input
(re-preprocessed only when the challenger's preprocessing differs) to the challenger's own
batcher, off the response path: one single-threaded, lower-priority worker that runs a batch
when the champion has nothing in flight (or after ``max_defer_s``), and a bounded queue, so a
busy challenger drops work (counted) rather than delaying the champion. Both
predictions go to the ``shadow_records`` table through :class:`ShadowRecorder`, a background
writer with its own bounded queue. ``autovision models compare`` reads them back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from autovision.errors import AutovisionError
from autovision.models.package import ModelPackage
from autovision.serving.batching import BatcherStopped, DynamicBatcher, QueueFull

if TYPE_CHECKING:
    from autovision.serving.state import ServedModel, ServerState

log = logging.getLogger("autovision.serving")

SHADOW_NICE = 19  # priority "nice" (the default), or where the idle class is refused
_STOP = object()


class ShadowRecorder:
    """Writes shadow records in batches from a background thread; ``put`` never blocks
    (False when the queue is full), ``close`` flushes what is queued."""

    def __init__(
        self,
        ws: Any,
        *,
        queue_limit: int = 10_000,
        batch_size: int = 256,
        interval_s: float = 0.5,
    ) -> None:
        self.ws = ws
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.written = 0
        self.failed = 0
        self._q: queue.Queue = queue.Queue(maxsize=queue_limit)
        self._thread = threading.Thread(target=self._loop, name="shadow-recorder", daemon=True)
        self._thread.start()

    def put(self, rows: list[dict[str, Any]]) -> bool:
        """Queue the records of one request; False (nothing queued) when the queue is full."""
        try:
            self._q.put_nowait(rows)
        except queue.Full:
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._q.put(_STOP)  # blocks only while the writer drains a full queue
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            rows = list(item)
            deadline = time.monotonic() + self.interval_s
            stop = False
            while len(rows) < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._q.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                rows.extend(item)
            self._write(rows)
            if stop:
                return

    def _write(self, rows: list[dict[str, Any]]) -> None:
        from sqlalchemy import insert

        from autovision.workspace.db import ShadowRecordRow

        try:
            with self.ws.Session.begin() as s:
                s.execute(insert(ShadowRecordRow), rows)
            self.written += len(rows)
        except Exception as exc:  # noqa: BLE001 - a failed write must not stop the writer
            self.failed += len(rows)
            log.error("%d shadow records not written: %s", len(rows), exc)


class ShadowRunner:
    """The challenger of one served name: its package, batcher, recorder and counters."""

    def __init__(
        self,
        ws: Any,
        ref: str,
        *,
        rate: float = 1.0,
        seed: int = 0,
        queue_limit: int = 64,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        metrics: Any = None,
        names: dict[str, tuple[str | None, int | None]] | None = None,
        record_queue_limit: int = 10_000,
        priority: str = "nice",
        champion_busy: Callable[[], bool] | None = None,
        max_defer_s: float = 1.0,
        usage: Any = None,
    ) -> None:
        info = ws.model(ref)
        self.ref = ref
        self.id: str = info["model"]
        self.name: str | None = info.get("name") or info.get("dataset")
        self.version: int | None = info.get("version")
        self.rate = rate
        self.priority = priority
        self._champion_busy = champion_busy
        self.max_defer_s = max_defer_s
        self._usage = usage  # a ServeRecorder: this challenger's own CPU (thread time)
        self._names = dict(names or {})  # served id -> (name, version) when ServedModel lacks them
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = False
        self.package = ModelPackage.load(info["path"], threads=1, spinning=False)
        self.batcher = DynamicBatcher(
            lambda x: self._predict(x),
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            queue_limit=queue_limit,
            name=f"shadow-{self.id}",
            workers=1,
        )
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow-prep")
        self.recorder = ShadowRecorder(ws, queue_limit=record_queue_limit)
        self._counts = {"requests": 0, "recorded": 0, "disagreements": 0}
        self._dropped: dict[str, int] = {}
        self._metrics = _counters(metrics)
        self.batcher.start()

    # ---- the request path (event loop): cheap, never blocks, never raises ----------

    def offer(
        self,
        served: ServedModel,
        x: np.ndarray,
        probs: np.ndarray,
        request_id: str | None,
        prepare: Callable[..., np.ndarray] | None = None,
    ) -> None:
        """Run the request on the challenger too, if it is shadowed; returns at once."""
        try:
            self._offer(served, x, probs, request_id, prepare)
        except Exception:  # noqa: BLE001 - the champion's response must not suffer
            log.exception("shadow offer failed")
            self._drop("error")

    def _offer(self, served, x, probs, request_id, prepare) -> None:
        if self._closed or served.id == self.id:
            return
        name, version = self._champion(served)
        if name != self.name:
            return
        if self.rate < 1.0:
            with self._lock:
                if self._rng.random() >= self.rate:
                    return
        self._count("requests")
        try:
            ticket = self.batcher.admit(len(probs))
        except QueueFull:
            self._drop("queue_full")
            return
        except BatcherStopped:
            self._drop("stopped")
            return
        meta = {
            "request_id": request_id if request_id and request_id != "-" else "",
            "name": name or "",
            "champion_id": served.id,
            "champion_version": version,
            "champion": served.package,
            "probs": np.array(probs, dtype=np.float32),
        }
        if self.package.preprocessing == served.package.preprocessing:
            self._watch(self.batcher.submit(x), ticket, meta)
        elif prepare is None:
            self.batcher.release(ticket, submitted=False)
            self._drop("no_input")
        else:
            self._prep.submit(self._prepare_and_submit, prepare, ticket, meta)

    def _champion(self, served: ServedModel) -> tuple[str | None, int | None]:
        name, version = self._names.get(served.id, (None, None))
        return getattr(served, "name", None) or name, getattr(served, "version", None) or version

    # ---- off the request path --------------------------------------------------------

    def _prepare_and_submit(self, prepare: Callable[..., np.ndarray], ticket: int, meta) -> None:
        _lower_priority(self.priority)
        began = time.thread_time()
        try:
            x = prepare(self.package.preprocessing)
        except Exception as exc:  # noqa: BLE001 - counted; the champion already answered
            self.batcher.release(ticket, submitted=False)
            log.warning("shadow preprocessing failed: %s", exc)
            self._drop("error")
            return
        finally:
            self._charge(time.thread_time() - began)
        self._watch(self.batcher.submit(x), ticket, meta)

    def _watch(self, future: Future, ticket: int, meta: dict[str, Any]) -> None:
        future.add_done_callback(lambda f: self._done(f, ticket, meta))

    def _predict(self, x: np.ndarray) -> np.ndarray:
        """Wait (up to ``max_defer_s``) until the champion has nothing in flight, then run:
        the challenger takes the CPU and the GIL between the champion's requests."""
        _lower_priority(self.priority)
        if self._champion_busy is not None:
            deadline = time.monotonic() + self.max_defer_s
            while not self._closed and time.monotonic() < deadline and self._champion_busy():
                time.sleep(0.002)
        began = time.thread_time()
        try:
            return self.package.predict_array(x)
        finally:
            self._charge(time.thread_time() - began, len(x))

    def _charge(self, cpu_s: float, images: int = 0) -> None:
        if self._usage is not None:
            self._usage.charge(self.id, cpu_s, images)

    def _done(self, future: Future, ticket: int, meta: dict[str, Any]) -> None:
        self.batcher.release(ticket, submitted=True)
        if future.cancelled() or future.exception() is not None:
            stopped = isinstance(future.exception(), BatcherStopped)
            self._drop("stopped" if stopped else "error")
            return
        a, b = meta["probs"], np.asarray(future.result(), dtype=np.float32)
        a_labels = _names(meta["champion"], a)
        b_labels = _names(self.package, b)
        now = datetime.now(UTC)
        rows = []
        disagreements = 0
        for i, (pa, pb, la, lb) in enumerate(zip(a, b, a_labels, b_labels, strict=True)):
            disagreements += sorted(la) != sorted(lb)
            rows.append(
                {
                    "time": now,
                    "request_id": meta["request_id"],
                    "instance": i,
                    "name": meta["name"],
                    "champion_id": meta["champion_id"],
                    "champion_version": meta["champion_version"],
                    "challenger_id": self.id,
                    "challenger_version": self.version,
                    "champion_probs": [float(p) for p in pa],
                    "challenger_probs": [float(p) for p in pb],
                    "champion_labels": la,
                    "challenger_labels": lb,
                }
            )
        if not self.recorder.put(rows):
            self._drop("record_queue_full")
            return
        self._count("recorded", len(rows))
        self._count("disagreements", disagreements)

    # ---- counters and lifecycle ------------------------------------------------------

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[key] += amount
        if self._metrics and amount:
            self._metrics[key].inc(amount, challenger=self.id)

    def _drop(self, reason: str) -> None:
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + 1
        if self._metrics:
            self._metrics["dropped"].inc(challenger=self.id, reason=reason)

    def stats(self) -> dict[str, Any]:
        """Requests shadowed, images recorded, disagreements, drops by reason."""
        with self._lock:
            dropped = dict(self._dropped)
            out: dict[str, Any] = dict(self._counts)
        out["dropped"] = sum(dropped.values())
        out["dropped_by_reason"] = dropped
        out["written"] = self.recorder.written
        return out

    def close(self, drain_s: float = 5.0) -> None:
        """Stop taking requests, let queued shadow work finish (up to ``drain_s``), flush."""
        self._closed = True
        deadline = time.monotonic() + drain_s
        while self.batcher.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        self._prep.shutdown(wait=False, cancel_futures=True)
        self.batcher.stop()
        self.recorder.close()


def start_shadow(state: ServerState) -> ShadowRunner | None:
    """The settings' challenger, loaded and started; None (logged) when none is asked for
    or it cannot be loaded: the champion keeps serving either way."""
    s = state.settings
    if not s.shadow:
        return None
    names = {}
    for served in state.models.values():
        try:
            info = state.ws.model(served.id)
        except AutovisionError:
            continue
        names[served.id] = (info.get("name") or info.get("dataset"), info.get("version"))
    try:
        runner = ShadowRunner(
            state.ws,
            s.shadow,
            rate=s.shadow_rate,
            seed=s.shadow_seed,
            queue_limit=s.shadow_queue_limit,
            max_batch_size=s.max_batch_size,
            max_wait_ms=s.max_batch_wait_ms,
            metrics=state.metrics,
            names=names,
            priority=s.shadow_priority,
            champion_busy=lambda: any(m.batcher.pending for m in list(state.models.values())),
            usage=state.usage,
        )
    except AutovisionError as exc:
        log.error("shadow challenger %s cannot be loaded: %s", s.shadow, exc)
        return None
    log.info(
        "%s, at rate %g", pinned(s.shadow, runner.id, runner.name, runner.version), s.shadow_rate
    )
    return runner


def pinned(ref: str, model_id: str, name: str | None, version: int | None) -> str:
    """What the challenger is pinned to: its ref is resolved once, at start-up (unlike the
    champion's alias, a later move of the challenger's alias needs a restart)."""
    now = model_id if version is None else f"{name}@{version}"
    line = f"shadow challenger {ref} pinned to {now} ({model_id})"
    if ref not in (model_id, now):
        line += "; a later move of its alias is not followed until the server restarts"
    return line


def _names(package: ModelPackage, probs: np.ndarray) -> list[list[str]]:
    return [[package.labels[j] for j in row] for row in package.decide(probs)]


def _lower_priority(priority: str) -> None:
    """Once per thread (Linux: per thread): the highest nice value (``nice``: a small share
    of a busy CPU, so a GIL it holds is soon released), or the idle scheduling class
    (``idle``: only CPU nothing else wants; the GIL can then stall the champion)."""
    local = _thread_state
    if getattr(local, "niced", False):
        return
    local.niced = True
    tid = threading.get_native_id()
    if priority == "idle":
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, tid, SHADOW_NICE)


_thread_state = threading.local()


def _counters(metrics: Any) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {
        "requests": metrics.add_counter(
            "autovision_shadow_requests_total",
            "Requests also sent to the shadow challenger.",
            ("challenger",),
        ),
        "recorded": metrics.add_counter(
            "autovision_shadow_images_total",
            "Images predicted by the shadow challenger and recorded.",
            ("challenger",),
        ),
        "disagreements": metrics.add_counter(
            "autovision_shadow_disagreements_total",
            "Images where the challenger's labels differ from the champion's.",
            ("challenger",),
        ),
        "dropped": metrics.add_counter(
            "autovision_shadow_dropped_total",
            "Shadow requests dropped, by reason (queue_full, record_queue_full, error, ...).",
            ("challenger", "reason"),
        ),
    }
