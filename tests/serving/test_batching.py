"""The dynamic batcher on its own: no HTTP, no model."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest

from autovision.serving.batching import BatcherStopped, DynamicBatcher, QueueFull


class Recorder:
    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.delay = delay
        self.gate = gate

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)
        self.sizes.append(len(x))
        return x[:, :1] * 2


def _submit(b: DynamicBatcher, value: float, n: int = 1):
    ticket = b.admit(n)
    fut = b.submit(np.full((n, 3), value, dtype=np.float32))
    fut.add_done_callback(lambda _: b.release(ticket, submitted=True))
    return fut


def test_lone_request_does_not_wait():
    run = Recorder()
    b = DynamicBatcher(run, max_batch_size=8, max_wait_ms=2000)
    b.start()
    try:
        t0 = time.perf_counter()
        assert _submit(b, 1.0).result(5)[0, 0] == 2.0
        assert time.perf_counter() - t0 < 1.0  # far below max_wait: nobody else was coming
    finally:
        b.stop()


def test_queued_requests_share_one_call_and_get_their_rows():
    gate = threading.Event()
    run = Recorder(gate=gate)
    b = DynamicBatcher(run, max_batch_size=8, max_wait_ms=1)
    b.start()
    try:
        futures = [_submit(b, float(i), n=1 + i % 2) for i in range(6)]  # 9 images
        gate.set()
        for i, f in enumerate(futures):
            out = f.result(5)
            assert out.shape == (1 + i % 2, 1)
            assert np.all(out == 2.0 * i)
        assert sum(run.sizes) == 9
        assert all(s <= 8 for s in run.sizes)
        assert len(run.sizes) <= 3
    finally:
        b.stop()


def test_waits_for_requests_still_being_prepared():
    run = Recorder()
    b = DynamicBatcher(run, max_batch_size=8, max_wait_ms=500)
    b.start()
    try:
        t1, t2 = b.admit(1), b.admit(1)  # both admitted; the second is still preprocessing
        f1 = b.submit(np.zeros((1, 3), np.float32))
        time.sleep(0.05)
        f2 = b.submit(np.ones((1, 3), np.float32))
        f1.result(5), f2.result(5)
        b.release(t1, submitted=True)
        b.release(t2, submitted=True)
        assert run.sizes == [2]
    finally:
        b.stop()


def test_queue_limit():
    b = DynamicBatcher(Recorder(), queue_limit=4)
    t = b.admit(3)
    with pytest.raises(QueueFull):
        b.admit(2)
    b.admit(1)
    assert b.pending == 4
    b.release(t, submitted=False)
    assert b.pending == 1
    b.admit(3)
    # a lone request larger than the limit is still served
    b2 = DynamicBatcher(Recorder(), queue_limit=2)
    b2.admit(5)


def test_cancelled_work_is_skipped_and_errors_reach_every_waiter():
    gate, entered = threading.Event(), threading.Event()
    calls: list[int] = []

    def run(x):
        entered.set()
        gate.wait(10)
        calls.append(len(x))
        if len(x) == 2:
            raise ValueError("boom")
        return x

    b = DynamicBatcher(run, max_batch_size=8, max_wait_ms=0)
    b.start()
    try:
        first = _submit(b, 0.0)
        assert entered.wait(5)  # the worker is inside run() with the first request
        cancelled = _submit(b, 1.0)
        a, c = _submit(b, 2.0), _submit(b, 3.0)
        assert cancelled.cancel()
        gate.set()
        first.result(5)
        with pytest.raises(ValueError):
            a.result(5)
        with pytest.raises(ValueError):
            c.result(5)
        assert calls == [1, 2]
    finally:
        b.stop()


def test_stop_drains_queued_work_then_refuses():
    gate = threading.Event()
    b = DynamicBatcher(Recorder(gate=gate), max_batch_size=1)
    b.start()
    running = _submit(b, 0.0)
    time.sleep(0.05)
    queued = _submit(b, 1.0)
    stopper = threading.Thread(target=b.stop)
    stopper.start()
    time.sleep(0.05)
    gate.set()
    stopper.join(10)
    assert running.result(5)[0, 0] == 0.0
    assert queued.result(5)[0, 0] == 2.0  # queued before stop: still answered
    with pytest.raises(BatcherStopped):
        b.admit(1)
    with pytest.raises(BatcherStopped):
        b.submit(np.zeros((1, 3), np.float32)).result(1)


def test_workers_run_batches_side_by_side_and_a_lone_batch_runs_alone():
    """Two workers: two batches at once under load (``run``); a batch with nothing else in
    sight goes to ``run_alone`` (the every-core session)."""
    gate = threading.Event()
    inside: list[str] = []
    lock = threading.Lock()
    both_in = threading.Event()

    def make(kind: str):
        def run(x):
            with lock:
                inside.append(kind)
                if len(inside) >= 2:
                    both_in.set()
            gate.wait(10)
            return x[:, :1] * 2

        return run

    b = DynamicBatcher(make("shared"), max_batch_size=1, workers=2, run_alone=make("alone"))
    b.start()
    try:
        lone = _submit(b, 1.0)
        assert _wait_for(lambda: len(inside) == 1)
        assert inside == ["alone"]  # nothing else was running, waiting or being prepared
        second = _submit(b, 2.0)
        assert both_in.wait(5), "the second worker runs while the first is still busy"
        assert inside == ["alone", "shared"]
        gate.set()
        assert lone.result(5)[0, 0] == 2.0 and second.result(5)[0, 0] == 4.0
    finally:
        gate.set()
        b.stop()


def test_stop_with_workers_answers_or_refuses_everything():
    b = DynamicBatcher(Recorder(delay=0.01), max_batch_size=2, workers=3)
    b.start()
    futures = [_submit(b, float(i)) for i in range(10)]
    b.stop()
    for i, f in enumerate(futures):
        with contextlib.suppress(BatcherStopped):  # queued after stop: refused
            assert f.result(5)[0, 0] == 2.0 * i


def _wait_for(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False
