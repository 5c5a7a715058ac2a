"""``start_training_job`` refuses the options a training would fail on, before any worker
starts (a form shows the reason at once)."""

from __future__ import annotations

import pytest

from autovision.errors import AutovisionError
from autovision.jobs import check_train_options, list_jobs, start_training_job


@pytest.fixture
def no_worker(monkeypatch):
    from autovision.jobs import api

    started: list[str] = []
    monkeypatch.setattr(api, "_spawn", lambda ws, job_id: started.append(job_id))
    return started


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget": "soon"}, "invalid budget 'soon'"),
        ({"trials": 2, "task": "both"}, "unknown task 'both'"),
        ({"trials": 2, "seed": "7"}, "the seed must be a whole number"),
        ({"trials": 2, "seed": True}, "the seed must be a whole number"),
        ({"trials": 2, "name": "no spaces"}, "invalid model name 'no spaces'"),
        ({"trials": 2, "base_model": "ghost@3"}, "ghost"),
        ({"trials": 2, "exclude_issues": "typos"}, "unknown issue typos"),
    ],
)
def test_bad_options_are_refused_before_a_worker_starts(
    workspace, tiny_ws, no_worker, options, message
) -> None:
    tiny_ws()
    with pytest.raises(AutovisionError, match=message):
        start_training_job(workspace, "tiny", **options)
    assert no_worker == [] and list_jobs(workspace) == []


def test_good_options_pass(workspace, tiny_ws, no_worker) -> None:
    tiny_ws()
    options = {
        "trials": 2,
        "task": "multi-label",
        "seed": 3,
        "name": "leafy",
        "exclude_issues": "exact_duplicates,label_issues",
    }
    check_train_options(workspace, options)
    job_id = start_training_job(workspace, "tiny", **options)
    assert no_worker == [job_id]
    check_train_options(workspace, {"resume": True, "budget": "ignored"})  # a resume keeps its own
