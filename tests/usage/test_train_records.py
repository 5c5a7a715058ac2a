"""The training recorder against a workload whose cost is known, and a real tiny ``train``."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time

import pytest

from autovision.data.dataset import Item
from autovision.usage.records import TrainRecorder, current_train, read_records

BUSY_S = 0.5
SLEEP_S = 0.3
CHILD_MIB = 128


def _spend_cpu(seconds: float) -> None:
    """Burn exactly ``seconds`` of this process's CPU time (whatever the machine's load)."""
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass


def _child(mib: int, seconds: float, spent) -> None:
    block = bytearray(b"\x01" * (mib * 1024 * 1024))  # written, so resident
    _spend_cpu(seconds)
    del block
    ru = resource.getrusage(resource.RUSAGE_SELF)
    spent.value = ru.ru_utime + ru.ru_stime  # all it cost, its memory writes included


def test_train_recorder_measures_a_known_workload(workspace) -> None:
    ctx = mp.get_context("fork")
    outer = time.monotonic()
    with TrainRecorder(workspace, "toy@1") as rec:
        assert current_train() is rec
        spent = ctx.Value("d", 0.0)
        child = ctx.Process(target=_child, args=(CHILD_MIB, BUSY_S, spent))
        child.start()
        child.join()
        assert child.exitcode == 0
        _spend_cpu(BUSY_S)
        time.sleep(SLEEP_S)
    outer = time.monotonic() - outer
    assert current_train() is None

    records = read_records(workspace, "train")
    assert len(records) == 1
    d = records[0]["data"]
    assert d == rec.record
    # wall: at least the child's and this process's CPU plus the sleep, at most what we saw
    assert 2 * BUSY_S + SLEEP_S <= d["wall_s"] <= outer + 0.01
    assert d["node_hours"] == pytest.approx(d["wall_s"] / 3600, abs=1e-6)
    assert BUSY_S <= d["cpu_self_s"] <= BUSY_S + 0.25
    # the child's own count of what it spent (its busy loop plus writing its block, which
    # costs more the larger the forked parent is)
    assert d["cpu_children_s"] >= BUSY_S
    assert d["cpu_children_s"] == pytest.approx(
        spent.value, abs=0.15
    )  # plus its exit: unmapping a forked parent
    assert d["cpu_s"] == pytest.approx(d["cpu_self_s"] + d["cpu_children_s"], abs=2e-3)
    assert d["peak_rss_children_bytes"] >= CHILD_MIB * 1024 * 1024
    assert d["peak_rss_bytes"] >= CHILD_MIB * 1024 * 1024
    assert d["gpu_s"] == 0 and d["gpus"] == 0
    assert d["outcome"] == "ok" and d["dataset"] == "toy@1"


def test_gpu_seconds_are_wall_seconds_times_gpus(workspace) -> None:
    with TrainRecorder(workspace, "toy") as rec:
        rec.note(gpus=1, device="cuda")
        time.sleep(0.05)
    d = rec.record
    assert d["gpu_s"] == pytest.approx(d["wall_s"], abs=2e-3) and d["device"] == "cuda"


def test_a_failed_run_is_recorded_too(workspace) -> None:
    with pytest.raises(RuntimeError), TrainRecorder(workspace, "toy"):
        raise RuntimeError("boom")
    (r,) = read_records(workspace, "train")
    assert r["data"]["outcome"] == "failed" and r["data"]["stop_reason"] == "FAILED"
    assert r["data"]["error"] == "RuntimeError: boom"


SPACE = {"backbones": ["compact_cnn"], "sizes": {"compact_cnn": [16]}, "epochs": [2, 2]}


@pytest.mark.slow
def test_a_real_train_writes_one_record(workspace, image_bytes, monkeypatch) -> None:
    from autovision.errors import DatasetError
    from autovision.search import train

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    items, k = [], 1
    for li, label in enumerate(("a", "b")):
        for split, n in (("train", 8), ("validation", 3), ("test", 2)):
            for _ in range(n):
                sha = workspace.blobs.put(image_bytes(li, 16, k))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    workspace.create_version("tiny", items, multi_label=False)

    outer = time.monotonic()
    result = train(workspace, "tiny@1", trials=1, seed=1)
    outer = time.monotonic() - outer
    (r,) = read_records(workspace, "train")
    d = r["data"]
    assert r["subject"] == result.run_id
    assert d["model"] == result.model and d["trials"] == result.trials == 1
    assert d["stop_reason"] == result.stop_reason == "TRIALS_DONE"
    assert d["dataset"] == "tiny@1" and d["run_id"] == result.run_id
    assert result.seconds <= d["wall_s"] <= outer + 0.01
    assert d["cpu_s"] > 0 and d["peak_rss_bytes"] > 0
    assert d["device"] in ("cpu", "cuda")
    assert d["gpu_s"] == (pytest.approx(d["wall_s"]) if d["device"] == "cuda" else 0)

    with pytest.raises(DatasetError):
        train(workspace, "missing", trials=1)
    failed = read_records(workspace, "train")[-1]["data"]
    assert failed["outcome"] == "failed" and failed["dataset"] == "missing"
