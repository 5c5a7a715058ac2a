"""A retrain job: the worker runs ``versions.retrain`` (train the next version from the
alias, evaluate both, decide), with the training's progress events."""

from __future__ import annotations

import pytest

from autovision.errors import AutovisionError
from autovision.jobs import job_events, job_status, list_jobs, start_retrain_job, start_training_job
from autovision.jobs import process as procs
from tests.jobs.conftest import wait_for


def _finished(ws, job_id):
    st = job_status(ws, job_id)
    return st if st["status"] not in ("queued", "running") else None


def test_a_retrain_job_checks_its_model_and_options(workspace, tiny_ws) -> None:
    tiny_ws()
    with pytest.raises(AutovisionError, match="ghost"):
        start_retrain_job(workspace, "ghost", trials=1)
    with pytest.raises(AutovisionError, match="no option 'task'"):
        start_retrain_job(workspace, "tiny", task="multi-label")
    assert list_jobs(workspace) == []


@pytest.mark.slow
def test_a_retrain_job_trains_the_next_version_in_a_worker(workspace, tiny_ws) -> None:
    tiny_ws()
    first = start_training_job(workspace, "tiny", trials=1, seed=1)
    assert wait_for(lambda: _finished(workspace, first))["status"] == "done"

    job_id = start_retrain_job(workspace, "tiny", trials=1, user="ana")
    st = wait_for(lambda: _finished(workspace, job_id))

    assert st["status"] == "done", (st["error"], procs.log_path(workspace, job_id).read_text())
    assert st["kind"] == "retrain" and st["retrain_of"] == "tiny" and st["model"] == "tiny@2"
    assert st["result"]["incumbent"]["version"] == 1 and "promoted" in st["result"]
    assert st["stop_reason"] == "TRIALS_DONE" and st["trials"]
    kinds = [e["event"] for e in job_events(workspace, job_id)]
    assert kinds.index("search_start") < kinds.index("trial_end") < kinds.index("done")
    assert list_jobs(workspace, kind="retrain")[0]["model"] == "tiny@2"
