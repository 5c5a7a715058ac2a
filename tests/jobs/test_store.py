"""The jobs tables without a worker: events, conditional updates, concurrency, summaries,
validation, cancel and recover of jobs whose worker is gone."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from autovision.errors import DatasetError, JobError, TrainingError
from autovision.jobs import (
    cancel_job,
    job_events,
    job_status,
    list_jobs,
    recover_jobs,
    start_training_job,
    store,
)
from autovision.jobs.summary import summarize
from autovision.security.audit import acting_as, read_audit

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_events_are_numbered_in_order_and_read_after_a_seq(workspace) -> None:
    job_id = store.create(workspace, "train", {"dataset_ref": "tiny"}, "ana")
    seqs = [store.append_event(workspace, job_id, {"event": "e", "i": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    got = job_events(workspace, job_id, after_seq=2)
    assert [(e["seq"], e["i"]) for e in got] == [(3, 2), (4, 3), (5, 4)]
    assert job_events(workspace, job_id, after_seq=5) == []
    assert [e["seq"] for e in job_events(workspace, job_id, limit=2)] == [1, 2]
    with pytest.raises(JobError, match="no job 'nope'"):
        job_events(workspace, "nope")


def test_events_are_json_for_a_browser(workspace) -> None:
    np = pytest.importorskip("numpy")
    job_id = store.create(workspace, "train", {}, None)
    store.append_event(
        workspace, job_id, {"event": "e", "best": float("-inf"), "x": np.float32(0.5)}
    )
    (e,) = job_events(workspace, job_id)
    assert (
        e["best"] is None
        and e["x"] == 0.5
        and not any(isinstance(v, float) and not math.isfinite(v) for v in e.values())
    )


def test_concurrent_writers_from_threads_and_processes(workspace) -> None:
    """The worker and the web server write the same SQLite file: no lost or doubled seq."""
    job_id = store.create(workspace, "train", {}, None)
    code = (
        "import sys\n"
        "from autovision.workspace import Workspace\n"
        "from autovision.jobs import store\n"
        "ws = Workspace(sys.argv[1])\n"
        "for i in range(40):\n"
        "    store.append_event(ws, sys.argv[2], {'event': 'proc', 'i': i})\n"
        "    store.set_fields(ws, sys.argv[2], when=('queued',), heartbeat_at=None)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(workspace.root), job_id])
        for _ in range(2)
    ]

    def write() -> None:
        for i in range(40):
            store.append_event(workspace, job_id, {"event": "thread", "i": i})

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    seqs = [e["seq"] for e in job_events(workspace, job_id)]
    assert seqs == list(range(1, 161))


def test_updates_are_conditional_on_the_status(workspace) -> None:
    job_id = store.create(workspace, "train", {}, None)
    assert store.claim(workspace, job_id, 123) == 1
    assert store.claim(workspace, job_id, 456) is None  # running: not queued any more
    assert not store.set_fields(workspace, job_id, when=("running",), expect_pid=456, pid=1)
    assert store.set_fields(workspace, job_id, when=("running",), expect_pid=123, status="done")
    assert not store.set_fields(workspace, job_id, when=("running",), status="failed")
    assert store.get(workspace, job_id)["status"] == "done"


def test_start_checks_the_dataset_budget_and_options(workspace, tiny_ws) -> None:
    tiny_ws()
    with pytest.raises(DatasetError, match="no dataset named 'nope'"):
        start_training_job(workspace, "nope", trials=1)
    with pytest.raises(DatasetError, match="no version 7"):
        start_training_job(workspace, "tiny@7", trials=1)
    with pytest.raises(TrainingError, match="invalid budget"):
        start_training_job(workspace, "tiny", budget="soon")
    with pytest.raises(JobError, match="'progress'"):
        start_training_job(workspace, "tiny", progress=print)
    with pytest.raises(JobError, match="option 'when': type is not a JSON value"):
        start_training_job(workspace, "tiny", when=object)
    assert list_jobs(workspace) == []  # nothing recorded, no worker started


def test_summary_from_events() -> None:
    cfg = {"backbone": "compact_cnn", "mode": "scratch", "image_size": 16}
    events = [
        {"event": "job", "status": "running"},
        {"event": "search_start", "run_id": "r1", "budget": {"seconds": 60.0, "trials": None}},
        {"event": "trial_start", "trial": 0, "phase": "explore", "config": cfg, "n_train": 9},
        {"event": "epoch", "trial": 0, "epoch": 1, "epochs": 2, "score": 0.5, "elapsed": 3.0},
        {
            "event": "trial_end",
            "trial": 0,
            "state": "COMPLETE",
            "score": 0.75,
            "seconds": 2.0,
            "elapsed": 4.0,
            "config": cfg,
        },
        {"event": "trial_end", "trial": 1, "state": "SKIPPED", "why": "search ended"},
        {"event": "trial_start", "trial": 2, "phase": "explore", "config": cfg, "n_train": 9},
        {
            "event": "trial_end",
            "trial": 2,
            "state": "PRUNED",
            "score": 0.4,
            "seconds": 1.0,
            "elapsed": 5.0,
        },
        {"event": "trial_start", "trial": 3, "phase": "explore", "config": cfg, "epochs": 3},
        {"event": "epoch", "trial": 3, "epoch": 2, "epochs": 3, "score": 0.6, "elapsed": 9.0},
    ]
    events = [{**e, "seq": i + 1} for i, e in enumerate(events)]
    s = summarize({"status": "running", "result": None}, events)
    assert [(t["trial"], t["state"]) for t in s["trials"]] == [(0, "COMPLETE"), (2, "PRUNED")]
    assert s["trials"][1]["backbone"] == "compact_cnn"  # from its trial_start
    assert s["best"]["trial"] == 0 and s["best"]["score"] == 0.75
    assert s["current"]["trial"] == 3 and s["current"]["epoch"] == 2
    assert s["budget"] == {
        "seconds": 60.0,
        "trials": None,
        "used_seconds": 9.0,
        "used_trials": 2,
        "left_seconds": 51.0,
        "left_trials": None,
    }
    assert s["run_id"] == "r1" and s["last_seq"] == 10 and s["model"] is None
    done = summarize(
        {"status": "done", "result": {"name": "tiny", "version": 3, "stop_reason": "X"}}, events
    )
    assert done["model"] == "tiny@3" and done["stop_reason"] == "X" and done["current"] is None


def test_cancel_a_job_whose_worker_never_ran(workspace) -> None:
    job_id = store.create(workspace, "train", {"dataset_ref": "tiny"}, "ana")
    with acting_as(user="bo", role="trainer", via="console"):
        st = cancel_job(workspace, job_id)
    assert st["status"] == "cancelled" and st["finished_at"]
    assert cancel_job(workspace, job_id)["status"] == "cancelled"  # again: a no-op
    assert job_events(workspace, job_id)[-1]["status"] == "cancelled"
    (line,) = [e for e in read_audit(workspace.audit_log_path) if e["action"] == "job.cancel"]
    assert line["target"] == job_id and line["user"] == "bo" and line["via"] == "console"
    done = store.create(workspace, "train", {}, None)
    store.set_fields(workspace, done, status="done")
    with pytest.raises(JobError, match="already done"):
        cancel_job(workspace, done)


def test_recover_marks_lost_workers_and_leaves_the_rest(workspace) -> None:
    lost = store.create(workspace, "train", {"dataset_ref": "tiny"}, None)
    store.claim(workspace, lost, _dead_pid())
    cancelled = store.create(workspace, "train", {}, None)
    store.claim(workspace, cancelled, _dead_pid())
    store.set_fields(workspace, cancelled, status="cancelled")
    live = store.create(workspace, "train", {}, None)
    store.claim(workspace, live, 1)  # pid 1 runs, but it is not that job's worker
    fresh = store.create(workspace, "train", {}, None)  # queued a moment ago, no pid yet

    actions = recover_jobs(workspace, resume=False)

    assert {a["id"]: a["action"] for a in actions} == {lost: "interrupted", live: "interrupted"}
    assert job_status(workspace, lost)["status"] == "interrupted"
    assert job_status(workspace, live)["status"] == "interrupted"
    assert job_status(workspace, cancelled)["status"] == "cancelled"
    assert job_status(workspace, fresh)["status"] == "queued"
    assert "gone" in job_events(workspace, lost)[-1]["why"]
    assert recover_jobs(workspace, resume=False) == []  # interrupted stays, until resumed
    assert [j["id"] for j in list_jobs(workspace, status="cancelled")] == [cancelled]
    with pytest.raises(JobError, match="unknown job status"):
        list_jobs(workspace, status="sleeping")


def test_a_worker_on_another_machine_is_judged_by_its_heartbeat(workspace) -> None:
    fresh = store.create(workspace, "train", {}, None)
    store.claim(workspace, fresh, _dead_pid())  # that pid means nothing on this machine
    store.set_fields(workspace, fresh, host="elsewhere")
    quiet = store.create(workspace, "train", {}, None)
    store.claim(workspace, quiet, _dead_pid())
    old = datetime.now(UTC) - timedelta(minutes=5)
    store.set_fields(workspace, quiet, host="elsewhere", heartbeat_at=old)

    actions = recover_jobs(workspace, resume=False, stale_after_s=60)

    assert [(a["id"], a["action"]) for a in actions] == [(quiet, "interrupted")]
    assert actions[0]["why"].startswith("no heartbeat for 30")
    assert job_status(workspace, fresh)["status"] == "running"
