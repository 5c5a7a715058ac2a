"""A pipeline killed with SIGKILL during training resumes where it stopped: the finished
stages are reused and the search goes on through its own resume (no trial lost)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from autovision.pipelines import run_pipeline
from autovision.pipelines.store import get_run, list_runs
from autovision.search.state import RunState
from autovision.search.state import list_runs as search_runs


def _wait_for_a_trial(ws_root: Path, proc: subprocess.Popen, timeout: float = 180) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        for path in (ws_root / "runs").glob("*/state.json"):
            try:
                if json.loads(path.read_text()).get("trials_done", 0) >= 1:
                    return path
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    raise AssertionError("no trial recorded in time")


@pytest.mark.slow
def test_killed_during_training_resumes(workspace, csv_source, write_pipeline) -> None:
    csv_source()
    stages = {
        "import": {"source": "incoming/labels.csv"},
        "check": {"gate": {"max_conflicting_labels": 0}},
        "train": {"budget": "25s"},
        "evaluate": {},
    }
    path = write_pipeline(stages)
    cmd = [sys.executable, "-m", "autovision.cli.main", "pipeline", "run", str(path), "--json"]
    cmd += ["--workspace", str(workspace.root)]
    proc = subprocess.Popen(
        cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        state_path = _wait_for_a_trial(workspace.root, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed = list_runs(workspace)[0]
    assert killed["status"] == "running"  # what the killed process left
    assert killed["stages"] == {"import": "done", "check": "done", "train": "running"}
    before = RunState.load(state_path)
    assert before.status == "running" and before.trials_done >= 1
    study = optuna.load_study(study_name=before.study_name, storage=workspace.db_url)
    done = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}

    lines: list[str] = []
    report = run_pipeline(workspace, path, log=lines.append)
    assert report.exit_code == 0, report.message
    assert {s.stage: s.status for s in report.stages} == {
        "import": "reused",
        "check": "reused",
        "train": "done",
        "evaluate": "done",
    }
    train = next(s for s in report.stages if s.stage == "train")
    assert train.outputs["resumed"] is True
    assert train.outputs["search_run_id"] == before.run_id
    assert any("resuming search " + before.run_id in line for line in lines)
    after = RunState.load(state_path)
    assert after.status == "finished" and after.sessions == 2
    assert len(search_runs(workspace)) == 1  # the same search, not a new one
    study = optuna.load_study(study_name=before.study_name, storage=workspace.db_url)
    trials = {t.number: t for t in study.trials}
    for number, value in done.items():
        assert trials[number].state.name == "COMPLETE" and trials[number].value == value
    assert after.spent_s <= 25 * 1.2  # one budget across both sessions

    first = get_run(workspace, killed["id"])
    assert first["status"] == "interrupted"
    assert [s["status"] for s in first["stages"]] == ["done", "done", "interrupted"]
    assert first["stages"][2]["state"]["search_run_id"] == before.run_id
