"""A search killed with SIGKILL after its first trial resumes without losing a trial, within
the original budget accounting."""

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

from autovision.search import train
from autovision.search.state import RunState, list_runs

BUDGET_S = 20.0


def _wait_for_first_trial(ws_root: Path, proc: subprocess.Popen, timeout: float = 120) -> Path:
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
    raise AssertionError("no trial finished in time")


@pytest.mark.slow
def test_resume_after_kill(workspace, make_dataset, tiny_space, assert_no_pickle) -> None:
    make_dataset(labels=("a", "b", "c"), counts=(40, 6, 0), size=24)
    cmd = [
        sys.executable,
        "-m",
        "autovision.cli.main",
        "train",
        "tiny",
        "--budget",
        f"{BUDGET_S}s",
        "--json",
        "--workspace",
        str(workspace.root),
    ]
    proc = subprocess.Popen(
        cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        state_path = _wait_for_first_trial(workspace.root, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    before = RunState.load(state_path)
    assert before.status == "running" and before.trials_done >= 1
    assert list(state_path.parent.glob("trials/*/best.safetensors"))  # the best checkpoint
    assert_no_pickle(state_path.parent)
    study = optuna.load_study(study_name=before.study_name, storage=workspace.db_url)
    done = {t.number: (t.value, t.params) for t in study.trials if t.state.name == "COMPLETE"}
    assert done

    result = train(workspace, "tiny", resume=True)

    after = RunState.load(state_path)
    assert after.status == "finished" and after.sessions == 2 and after.model == result.model
    assert len(list_runs(workspace)) == 1
    study = optuna.load_study(study_name=before.study_name, storage=workspace.db_url)
    trials = {t.number: t for t in study.trials}
    for number, (value, params) in done.items():  # no completed trial lost
        assert trials[number].state.name == "COMPLETE"
        assert trials[number].value == value and trials[number].params == params
    assert all(t.state.name != "RUNNING" for t in study.trials)
    assert result.trials >= len(done)
    # one budget across both sessions
    assert before.spent_s <= result.seconds <= BUDGET_S * 1.1
    assert result.stop_reason in ("BUDGET_REACHED", "MODEL_CONVERGED")
