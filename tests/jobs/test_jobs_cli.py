"""``autovision jobs list|show|cancel|recover`` through Typer's CliRunner (no worker)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.jobs import store

runner = CliRunner()


def run(ws, *args: str):
    return runner.invoke(app, ["jobs", *args, "--workspace", str(ws.root)])


def _job(ws, status: str = "queued") -> str:
    job_id = store.create(ws, "train", {"dataset_ref": "tiny@1", "train": {"trials": 2}}, "ana")
    cfg = {"backbone": "compact_cnn", "mode": "scratch", "image_size": 16}
    for e in (
        {"event": "search_start", "run_id": "r", "budget": {"seconds": None, "trials": 2}},
        {
            "event": "trial_end",
            "trial": 0,
            "state": "COMPLETE",
            "score": 0.9,
            "seconds": 1.5,
            "config": cfg,
            "elapsed": 2.0,
        },
    ):
        store.append_event(ws, job_id, e)
    if status == "done":
        result = {"name": "tiny", "version": 1, "stop_reason": "TRIALS_DONE"}
        store.set_fields(ws, job_id, status="done", result=result)
    return job_id


def test_list_show_cancel(workspace) -> None:
    done, queued = _job(workspace, "done"), _job(workspace)
    listed = json.loads(run(workspace, "list", "--json").stdout)
    assert [j["id"] for j in listed] == [queued, done]
    assert listed[1]["model"] == "tiny@1" and listed[1]["options"] == {"trials": 2}
    table = run(workspace, "list")
    assert table.exit_code == 0 and done in table.stdout and "tiny@1" in table.stdout

    shown = run(workspace, "show", done)
    assert shown.exit_code == 0, shown.output
    assert "TRIALS_DONE" in shown.stdout and "compact_cnn" in shown.stdout
    assert "1 of 2 trials" in shown.stdout
    st = json.loads(run(workspace, "show", done, "--json").stdout)
    assert st["model"] == "tiny@1" and st["trials"][0]["score"] == 0.9

    res = run(workspace, "cancel", queued, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "cancelled"
    res = run(workspace, "cancel", done)
    assert res.exit_code == 1 and "already done" in res.output
    res = run(workspace, "show", "job-nope")
    assert res.exit_code == 1 and "no job 'job-nope'" in res.output
    res = run(workspace, "list", "--status", "cancelled", "--json")
    assert [j["id"] for j in json.loads(res.stdout)] == [queued]
    res = run(workspace, "recover", "--no-resume")
    assert res.exit_code == 0 and "no job to recover" in res.stdout
