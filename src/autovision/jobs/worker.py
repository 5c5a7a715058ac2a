"""``python -m autovision.jobs.worker JOB_ID --workspace PATH``: runs one job to its end.

Started by :func:`autovision.jobs.start_training_job` (and by ``recover_jobs`` for a resume)
in a session of its own. It takes the job (``queued`` -> ``running``), beats a heartbeat from
a thread, appends every progress event of the search, and ends the job ``done`` (with the
model version) or ``failed``. SIGTERM (a cancel, a shutdown) stops the search like Ctrl-C:
a cancelled job stays cancelled; any other stop leaves it ``interrupted`` for a resume.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from typing import Any

from autovision.errors import AutovisionError, JobError
from autovision.jobs import store
from autovision.jobs.api import RETRAIN, heartbeat_s
from autovision.jobs.store import CANCELLED, DONE, FAILED, INTERRUPTED, RUNNING
from autovision.security.audit import acting_as
from autovision.workspace.db import utcnow


class Heartbeat(threading.Thread):
    """Writes ``heartbeat_at`` every few seconds while the job is this worker's; when the job
    was cancelled meanwhile (by a console that cannot signal this process), stops it."""

    def __init__(self, ws: Any, job_id: str, every_s: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.ws, self.job_id, self.every_s = ws, job_id, every_s
        self.halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.halt.wait(self.every_s):
            try:
                mine = store.set_fields(
                    self.ws, self.job_id, when=(RUNNING,), expect_pid=me, heartbeat_at=utcnow()
                )
            except Exception as exc:  # noqa: BLE001 - a busy database: try at the next beat
                print(f"heartbeat not written: {exc}", file=sys.stderr, flush=True)
                continue
            if not mine and not self.halt.is_set():
                os.kill(me, signal.SIGTERM)  # no longer ours (cancelled): stop the search
                return


class Recorder:
    """The search's progress callback: each event appended to ``job_events``; a trial's end
    carries the configuration of its start (backbone, mode, size)."""

    def __init__(self, ws: Any, job_id: str) -> None:
        self.ws, self.job_id = ws, job_id
        self.configs: dict[str, dict[str, Any]] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        event = dict(event)
        key = str(event.get("trial"))
        if event.get("event") == "trial_start":
            self.configs[key] = {"config": event.get("config"), "phase": event.get("phase")}
        elif event.get("event") == "trial_end":
            known = self.configs.get(key, {})
            if not event.get("config") and known.get("config"):
                event["config"] = known["config"]
            event.setdefault("phase", known.get("phase"))
        store.append_event(self.ws, self.job_id, event)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _resume_ref(ws: Any, job_id: str) -> str | None:
    """``NAME@VERSION`` of the job's unfinished search run, if an earlier attempt began one
    (None: start afresh). The search resumes the latest unfinished run of a dataset version,
    so refuse when that is not this job's."""
    from autovision.search.state import RunState, find_resumable, runs_dir

    run_ids = [e["run_id"] for e in store.events(ws, job_id) if e.get("event") == "search_start"]
    if not run_ids:
        return None
    path = runs_dir(ws) / run_ids[-1] / "state.json"
    try:
        state = RunState.load(path)
    except (OSError, ValueError, TypeError):
        return None  # never saved: nothing to resume
    if state.status == "finished":
        raise _Finished(state)
    ref = f"{state.dataset}@{state.dataset_version}"
    latest = find_resumable(ws, state.dataset, state.dataset_version)
    if latest.run_id != state.run_id:
        raise JobError(
            f"job {job_id}: run {state.run_id} of {ref} cannot be resumed while a newer "
            f"unfinished run of it ({latest.run_id}) exists"
        )
    return ref


class _Finished(Exception):  # noqa: N818 - not an error: the run ended before the job did
    def __init__(self, state: Any) -> None:
        self.state = state


def _finished_result(ws: Any, state: Any) -> dict[str, Any]:
    """The result of a run that registered its model before its worker was lost."""
    info = ws.model(state.model)
    keys = ("model", "name", "version", "dataset", "dataset_version", "task", "validation")
    keys += ("best", "trials", "stop_reason", "seconds")
    return {k: info.get(k) for k in keys}


def _retrain(ws: Any, name: str, progress: Recorder, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A retrain job's work: the decision, with the candidate as the job's model version."""
    from autovision.versions.retrain import retrain

    result = retrain(ws, name, progress=progress, **kwargs).to_dict()
    version = result["candidate"]["version"]
    stop = (result.get("train") or {}).get("stop_reason")
    return {**result, "version": version, "ref": f"{name}@{version}", "stop_reason": stop}


def run_job(ws: Any, job_id: str) -> int:
    """Run the job; the process exit status (0 done or cancelled, 1 failed, 130 stopped)."""
    from autovision.search.run import train
    from autovision.search.space import SearchSpace

    me = os.getpid()
    attempt = store.claim(ws, job_id, me)
    if attempt is None:
        print(f"job {job_id} is not queued: nothing to do", file=sys.stderr, flush=True)
        return 0
    store.append_event(ws, job_id, {"event": "job", "status": RUNNING, "attempt": attempt})
    job = store.get(ws, job_id)
    params = job["params"]
    kwargs = dict(params.get("train") or {})
    if isinstance(kwargs.get("space"), dict):
        kwargs["space"] = SearchSpace.from_dict(kwargs["space"])
    beat = Heartbeat(ws, job_id, heartbeat_s())
    beat.start()
    status, fields, code = FAILED, {}, 1
    try:
        with acting_as(**(params.get("actor") or {}), job=job_id):
            progress = Recorder(ws, job_id)
            if job["kind"] == RETRAIN:
                found = _retrain(ws, params["model"], progress, kwargs)
            else:
                ref = _resume_ref(ws, job_id) if attempt > 1 else None
                if ref is not None:
                    kwargs["resume"] = True
                result = train(ws, ref or params["dataset_ref"], progress=progress, **kwargs)
                found = {**result.to_dict(), "ref": result.ref}
        status, fields, code = DONE, {"result": found}, 0
    except _Finished as done:
        found = _finished_result(ws, done.state)
        found["ref"] = f"{found['name']}@{found['version']}"
        status, fields, code = DONE, {"result": found}, 0
    except KeyboardInterrupt:
        status, code = INTERRUPTED, 130
    except AutovisionError as exc:
        fields = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the job records every failure; the log has the trace
        traceback.print_exc()
        fields = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        beat.halt.set()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the outcome is written whole
    finished = {"finished_at": utcnow()} if status != INTERRUPTED else {}
    if store.set_fields(
        ws, job_id, when=(RUNNING,), expect_pid=me, status=status, **finished, **fields
    ):
        event = {"event": "job", "status": status, "attempt": attempt}
        if "error" in fields:
            event["error"] = fields["error"]
        store.append_event(ws, job_id, event)
    elif store.get(ws, job_id)["status"] == CANCELLED:
        code = 0
    if "error" in fields:
        print(f"job {job_id} failed: {fields['error']}", file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autovision.jobs.worker")
    parser.add_argument("job_id")
    parser.add_argument("--workspace", required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from autovision.workspace import Workspace

    return run_job(Workspace(args.workspace), args.job_id)


if __name__ == "__main__":
    sys.exit(main())
