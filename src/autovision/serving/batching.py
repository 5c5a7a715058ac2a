"""Dynamic batching: concurrent requests share one ONNX Runtime call.

Requests are admitted against a queue limit (else 429 with Retry-After), preprocessed in a
thread pool (decoding and resizing use every core), then queued. A worker thread takes the
first waiting request, adds whatever else is queued up to ``max_batch_size`` images, waits
at most ``max_batch_wait_ms`` for more only while other admitted requests are still being
preprocessed (so a lone request never waits), runs ONE ORT call on the stacked array and
resolves each request's future with its rows.

With ``workers`` > 1, that many batches run at once (Triton's "instance count"): on a CPU,
single-threaded ONNX Runtime calls side by side give more images/s than one multi-threaded
call and never wait on each other's threads. A batch that starts while nothing else runs,
waits or is being prepared goes to ``run_alone`` instead (a session with every core, for the
latency of a lone request).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("autovision.serving")


class QueueFull(Exception):
    """More images are waiting than the queue limit allows."""


class BatcherStopped(Exception):
    """The batcher is shutting down."""


@dataclass
class _Work:
    x: np.ndarray
    future: Future = field(default_factory=Future)

    @property
    def n(self) -> int:
        return len(self.x)


_STOP = object()


class DynamicBatcher:
    """``ticket = admit(n)``; ``future = submit(x, ticket)``; ``release(ticket)`` when done.

    ``run(x) -> y`` is called from a worker thread with a stacked float32 batch (``run_alone``
    instead when the batch is the only work in sight); ``on_batch(images, seconds)`` reports
    each call (metrics).
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        queue_limit: int = 256,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "model",
        workers: int = 1,
        run_alone: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self._run = run
        self._run_alone = run_alone
        self.workers = max(1, workers)
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.queue_limit = queue_limit
        self._on_batch = on_batch
        self.name = name
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # images admitted and not released
        self._preparing = 0  # admitted requests not yet submitted
        self._busy = 0  # workers inside a run
        self._threads: list[threading.Thread] = []
        self._carried: list[deque[_Work]] = []
        self._stopped = False

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for i in range(self.workers):
            carry: deque[_Work] = deque()
            self._carried.append(carry)
            t = threading.Thread(
                target=self._loop, args=(carry,), name=f"batcher-{self.name}-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped = True
        for _ in self._threads:
            self._q.put(_STOP)
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        left = [w for carry in self._carried for w in carry] + self._drain()
        self._carried = []
        for work in left:
            if not work.future.done():
                work.future.set_exception(BatcherStopped())

    # ---- admission ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Images admitted and not yet answered."""
        with self._lock:
            return self._admitted

    @property
    def preparing(self) -> int:
        """Requests admitted and still being preprocessed (not yet queued)."""
        with self._lock:
            return self._preparing

    def admit(self, n: int) -> int:
        """Reserve room for ``n`` images or raise :class:`QueueFull`; returns the ticket."""
        if self._stopped:
            raise BatcherStopped()
        with self._lock:
            if self._admitted > 0 and self._admitted + n > self.queue_limit:
                raise QueueFull()
            self._admitted += n
            self._preparing += 1
        return n

    def release(self, ticket: int, *, submitted: bool) -> None:
        with self._lock:
            self._admitted -= ticket
            if not submitted:
                self._preparing -= 1

    def submit(self, x: np.ndarray) -> Future:
        """Queue a preprocessed batch of one request; the future gets its output rows."""
        work = _Work(x)
        with self._lock:
            self._preparing -= 1
        if self._stopped:
            work.future.set_exception(BatcherStopped())
        else:
            self._q.put(work)
        return work.future

    # ---- the worker -----------------------------------------------------------------

    def _drain(self) -> list[_Work]:
        out = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return out
            if item is not _STOP:
                out.append(item)

    def _next(self, carry: deque[_Work], timeout: float | None) -> object:
        if carry:
            return carry.popleft()
        if timeout is None:
            return self._q.get()
        if timeout <= 0:
            return self._q.get_nowait()
        return self._q.get(timeout=timeout)

    def _loop(self, carry: deque[_Work]) -> None:
        while True:
            first = self._next(carry, None)
            if first is _STOP:
                return
            batch: list[_Work] = [first]  # type: ignore[list-item]
            size = batch[0].n
            deadline = time.monotonic() + self.max_wait
            stop = False
            while size < self.max_batch_size:
                try:
                    item = self._next(carry, 0)
                except queue.Empty:
                    with self._lock:
                        others_coming = self._preparing > 0
                    remaining = deadline - time.monotonic()
                    if not others_coming or remaining <= 0:
                        break
                    try:
                        item = self._next(carry, min(remaining, 0.001))
                    except queue.Empty:
                        continue
                if item is _STOP:
                    stop = True
                    break
                if size + item.n > self.max_batch_size:  # type: ignore[attr-defined]
                    carry.append(item)  # type: ignore[arg-type]
                    break
                batch.append(item)  # type: ignore[arg-type]
                size += item.n  # type: ignore[attr-defined]
            self._execute(batch)
            if stop:
                return

    def _execute(self, batch: list[_Work]) -> None:
        """One ORT call for the batch; never raises, so the worker thread never dies."""
        live = [w for w in batch if w.future.set_running_or_notify_cancel()]
        if not live:
            return
        with self._lock:
            alone = self._busy == 0 and self._preparing == 0 and self._q.empty()
            self._busy += 1
        run = self._run_alone if alone and self._run_alone is not None else self._run
        try:
            x = live[0].x if len(live) == 1 else np.concatenate([w.x for w in live])
            t0 = time.perf_counter()
            try:
                y = run(x)
            finally:
                with self._lock:
                    self._busy -= 1
            seconds = time.perf_counter() - t0
            start = 0
            for w in live:
                w.future.set_result(y[start : start + w.n])
                start += w.n
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            log.error("batch of %d failed: %s", len(live), type(exc).__name__, exc_info=exc)
            for w in live:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        if self._on_batch is not None:
            try:
                self._on_batch(len(x), seconds)
            except Exception:  # noqa: BLE001 - metrics must not stop the batcher
                log.exception("batch callback failed")
