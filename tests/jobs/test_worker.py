"""Real worker processes: a training job to its model version, a worker killed mid-search
and resumed by ``recover_jobs``, a cancel, and a worker that outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from autovision.jobs import (
    cancel_job,
    job_events,
    job_status,
    process,
    recover_jobs,
    start_training_job,
)
from autovision.security.audit import read_audit
from tests.jobs.conftest import wait_for

pytestmark = pytest.mark.slow
# A worker process and its Optuna study on SQLite and PostgreSQL; the resume, cancel and
# failure paths are the job store's (tests/jobs/test_store.py runs it on both).
both_backends = pytest.mark.usefixtures("db_url")


def _finished(ws, job_id):
    st = job_status(ws, job_id)
    return st if st["status"] not in ("queued", "running") else None


def _first_trial_end(ws, job_id):
    ends = [e for e in job_events(ws, job_id) if e["event"] == "trial_end"]
    return ends[0] if ends else None


@both_backends
def test_worker_outlives_its_parent_and_trains_to_a_model_version(workspace, tiny_ws) -> None:
    tiny_ws()
    parent = textwrap.dedent(
        """
        import sys
        from autovision.security.audit import acting_as
        from autovision.workspace import Workspace
        from autovision.jobs import start_training_job
        with acting_as(user="ana", role="trainer", via="console"):
            ws = Workspace(sys.argv[1])
            opts = {"trials": 1, "seed": 1, "exclude_issues": "exact_duplicates"}
            print(start_training_job(ws, "tiny", **opts))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", parent, str(workspace.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    job_id = out.stdout.strip()
    st = job_status(workspace, job_id)
    assert st["status"] in ("queued", "running")  # the parent has exited, the job goes on
    pid = st["pid"]
    assert pid and os.getsid(pid) == pid  # a session of its own

    st = wait_for(lambda: _finished(workspace, job_id))

    assert st["status"] == "done", (st["error"], process.log_path(workspace, job_id).read_text())
    assert st["model"] == "tiny@1" and st["result"]["model"] == workspace.model("tiny@1")["model"]
    assert st["stop_reason"] == "TRIALS_DONE" and st["user"] == "ana" and st["attempts"] == 1
    (trial,) = [t for t in st["trials"] if t["phase"] == "explore"]
    assert trial["state"] == "COMPLETE" and trial["trial"] == 0
    assert (trial["backbone"], trial["mode"], trial["size"]) == ("compact_cnn", "scratch", 16)
    assert trial["score"] is not None and trial["seconds"] > 0
    assert st["result"]["excluded"]["issues"] == ["exact_duplicates"]  # options pass through
    assert st["best"]["trial"] == 0 and st["budget"]["used_trials"] == 1
    assert st["budget"]["left_trials"] == 0

    events = job_events(workspace, job_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["event"] if e["event"] != "job" else e["status"] for e in events]
    assert kinds[:4] == ["queued", "running", "search_start", "trial_start"]
    assert kinds[-3:] == ["export", "done", "done"]  # the search's done, then the job's
    assert kinds.index("epoch") < kinds.index("trial_end") < kinds.index("export")
    assert job_events(workspace, job_id, after_seq=events[-2]["seq"]) == events[-1:]

    audit = list(read_audit(workspace.audit_log_path))
    start = next(e for e in audit if e["action"] == "job.start")
    assert start["user"] == "ana" and start["via"] == "console" and start["target"] == job_id
    assert start["exclude_issues"] == "exact_duplicates"
    end = next(e for e in audit if e["action"] == "train.end")  # written by the worker
    assert end["user"] == "ana" and end["job"] == job_id and end["version"] == "tiny@1"
    wait_for(lambda: not process.alive(pid, job_id), timeout=60)  # and then it exits


def test_killed_worker_is_resumed_by_recover_jobs(workspace, tiny_ws) -> None:
    tiny_ws(counts=(30, 6, 2))
    job_id = start_training_job(workspace, "tiny", trials=6, user="ana")
    first = wait_for(lambda: _first_trial_end(workspace, job_id))
    pid = job_status(workspace, job_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    assert process.wait(pid, 30) == -signal.SIGKILL
    before = job_status(workspace, job_id)
    assert before["status"] == "running"  # what the database says: nobody told it
    assert first["state"] == "COMPLETE"
    kept = {t["trial"]: t["score"] for t in before["trials"] if t["state"] == "COMPLETE"}
    assert 0 in kept and before["run_id"]

    actions = recover_jobs(workspace)

    assert [a["action"] for a in actions] == ["interrupted", "resumed"]
    st = wait_for(lambda: _finished(workspace, job_id))
    assert st["status"] == "done", (st["error"], process.log_path(workspace, job_id).read_text())
    assert st["attempts"] == 2 and st["sessions"] == 2 and st["model"] == "tiny@1"
    assert st["result"]["trials"] == 6 and st["budget"]["used_trials"] == 6
    starts = [e for e in job_events(workspace, job_id) if e["event"] == "search_start"]
    assert starts[1]["resumed"] and starts[1]["trials_before"] >= 1
    assert starts[0]["run_id"] == starts[1]["run_id"]  # the search's own resume, same run
    study = optuna.load_study(study_name=f"autovision-{st['run_id']}", storage=workspace.db_url)
    trials = {t.number: t for t in study.trials}
    for number, score in kept.items():  # the trials finished before the kill are kept
        assert trials[number].state.name == "COMPLETE" and trials[number].value == score
    statuses = [e["status"] for e in job_events(workspace, job_id) if e["event"] == "job"]
    assert statuses == ["queued", "running", "interrupted", "queued", "running", "done"]
    assert recover_jobs(workspace) == []
    actions = [e["action"] for e in read_audit(workspace.audit_log_path)]
    assert "job.interrupted" in actions and "job.resume" in actions


def test_cancel_stops_the_worker_and_it_is_never_resumed(workspace, tiny_ws) -> None:
    tiny_ws(counts=(30, 6, 2))
    job_id = start_training_job(workspace, "tiny", trials=50)
    wait_for(lambda: any(e["event"] == "trial_start" for e in job_events(workspace, job_id)))
    pid = job_status(workspace, job_id)["pid"]

    st = cancel_job(workspace, job_id)

    assert st["status"] == "cancelled" and not process.alive(pid, job_id)
    time.sleep(1.0)
    assert job_status(workspace, job_id)["status"] == "cancelled"  # the worker did not undo it
    assert recover_jobs(workspace) == []
    assert job_status(workspace, job_id)["status"] == "cancelled"
    audit = [e for e in read_audit(workspace.audit_log_path) if e["action"] == "train.end"]
    assert audit and audit[-1]["outcome"] == "interrupted"  # stopped like Ctrl-C, audited


def test_a_failing_training_ends_the_job_failed_with_its_reason(workspace, tiny_ws) -> None:
    tiny_ws()
    job_id = start_training_job(workspace, "tiny", trials=1, exclude_issues="label_issues")
    st = wait_for(lambda: _finished(workspace, job_id))
    assert st["status"] == "failed" and "label_issues" in st["error"], st
    assert job_events(workspace, job_id)[-1] == {
        **job_events(workspace, job_id)[-1],
        "event": "job",
        "status": "failed",
        "error": st["error"],
    }
    assert recover_jobs(workspace) == []  # a failed job is not retried
