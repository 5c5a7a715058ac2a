"""Trials on many workers: local processes sharing one Optuna study in the workspace database
(SQLite), a worker killed mid-trial, and ``autovision worker`` joining a running search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.errors import TrainingError
from autovision.search import train
from autovision.search import workers as pool
from autovision.search.state import list_runs

# trials long enough (seconds) to be caught running, and for two workers to share them
LONG_SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [12, 16],
    "batch_size": 16,
}


@pytest.fixture
def long_space(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(LONG_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    monkeypatch.setenv(pool.ENV_HEARTBEAT, "1")  # stale after 3 s
    return LONG_SPACE


def _study(ws, run_id: str) -> optuna.Study:
    return optuna.load_study(study_name=f"autovision-{run_id}", storage=ws.db_url)


def _run_id(ws) -> str:
    (run,) = list_runs(ws)
    return run.run_id


def _in_thread(fn, **kw) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def target() -> None:
        try:
            out["result"] = fn(**kw)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := cond():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.usefixtures("db_url")  # on SQLite and on PostgreSQL (the cluster's database)
def test_two_workers_share_one_study(workspace, make_dataset, tiny_space, monkeypatch) -> None:
    monkeypatch.setenv(pool.ENV_HEARTBEAT, "1")
    make_dataset(counts=(12, 4, 4))
    events: list[dict] = []
    result = train(workspace, "tiny", trials=4, workers=2, progress=events.append)
    assert result.stop_reason == "TRIALS_DONE" and result.trials == 4
    assert result.path is not None and (result.path / "model.json").exists()
    study = _study(workspace, result.run_id)
    ran = [t for t in study.trials if t.user_attrs.get("trained")]
    assert len(ran) == 4  # the --trials budget holds across workers
    by = {t.number: t.user_attrs["worker"] for t in ran}
    assert len(set(by.values())) == 2  # trials from both workers
    defaults = [t.number for t in study.trials if t.user_attrs.get("default")]
    assert len({by[n] for n in defaults[:2] if n in by}) == 2  # defaults spread first
    refits = [e for e in events if e["event"] == "trial_end" and e.get("state") == "REFIT"]
    assert len(refits) <= 1  # the refit ran once, in the coordinator
    assert not any(t.state == TrialState.RUNNING for t in study.trials)
    assert {e.get("worker") for e in events if e["event"] == "trial_end"} >= set(by.values())
    attrs = study.user_attrs
    assert attrs[pool.CLOCK_ATTR]["open"] is False and attrs[pool.STOP_ATTR] == "TRIALS_DONE"
    meta = json.loads((result.path / "model.json").read_text())
    assert meta["search"]["run_id"] == result.run_id


@pytest.mark.slow
def test_killed_worker_trial_is_retried(workspace, make_dataset, long_space) -> None:
    make_dataset(counts=(60, 6, 0), size=16)
    budget = 150.0
    t0 = time.monotonic()
    events: list[dict] = []
    thread, out = _in_thread(
        train, ws=workspace, dataset_ref="tiny", budget=budget, workers=2, progress=events.append
    )
    _wait(lambda: any(e["event"] == "workers_start" for e in events), 60, "the workers")
    run_id = _run_id(workspace)

    def running_with_epochs():
        if "error" in out or "result" in out:
            raise AssertionError(f"search ended before a kill: {out}")
        try:
            trials = _study(workspace, run_id).get_trials(states=(TrialState.RUNNING,))
        except KeyError:
            return None
        return next(
            (t for t in trials if t.intermediate_values and "worker_pid" in t.user_attrs), None
        )

    def stopped_mid_trial():
        """A worker frozen (SIGSTOP) while the study still has its trial running."""
        trial = running_with_epochs()
        if trial is None:
            return None
        pid = int(trial.user_attrs["worker_pid"])
        os.kill(pid, signal.SIGSTOP)
        if _study(workspace, run_id).trials[trial.number].state == TrialState.RUNNING:
            return trial
        os.kill(pid, signal.SIGCONT)  # it told its trial meanwhile: catch another
        return None

    victim = _wait(stopped_mid_trial, 120, "a trial running its epochs")
    os.kill(int(victim.user_attrs["worker_pid"]), signal.SIGKILL)
    thread.join(timeout=budget + 120)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    result = out["result"]
    took = time.monotonic() - t0
    assert took <= budget * 1.15 + 10, took  # within its budget
    study = _study(workspace, run_id)
    seen = [(t.number, t.state.name, t.user_attrs.get("worker")) for t in study.trials]
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL, (victim.number, seen)  # noticed by the heartbeat
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1, seen  # enqueued again (then trained, or skipped at the end)
    assert retries[0].params == killed.params
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert complete and result.best["trial"] in {t.number for t in complete}
    assert not any(t.state == TrialState.RUNNING for t in study.trials)


@pytest.mark.slow
def test_worker_cli_joins_train_workers(workspace, make_dataset, long_space) -> None:
    make_dataset(counts=(30, 6, 0), size=16)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "autovision.cli.main", "worker", "--json", "--wait", "300"]
    cmd += ["--workspace", str(workspace.root)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stderr.readline().decode()  # waits for a search: says so
        assert "waiting for a search" in line
        res = CliRunner().invoke(
            app,
            ["train", "tiny", "--trials", "6", "--workers", "1", "--json"]
            + ["--workspace", str(workspace.root)],
        )
        assert res.exit_code == 0, res.output
        result = json.loads(res.stdout)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    run_id = _run_id(workspace)
    assert report["run_id"] == run_id and report["trials"] and report["stop_reason"]
    study = _study(workspace, run_id)
    workers = {t.user_attrs["worker"] for t in study.trials if t.user_attrs.get("trained")}
    assert report["worker"] in workers and len(workers) == 2
    assert result["trials"] == 6 and result["stop_reason"] == "TRIALS_DONE"


def test_worker_refuses_a_run_without_workers(workspace) -> None:
    optuna.create_study(study_name="autovision-run-x", storage=workspace.db_url)
    with pytest.raises(TrainingError, match="not started with workers"):
        pool.run_worker(str(workspace.root), None, None, "run-x")
    with pytest.raises(TrainingError, match="no search run-y"):
        pool.run_worker(str(workspace.root), None, None, "run-y")


def test_waiting_for_a_search_times_out(workspace) -> None:
    said: list[str] = []
    with pytest.raises(TrainingError, match="none is running"):
        pool.wait_for_run(workspace.db_url, timeout=0.1, on_wait=said.append)
    assert said and "waiting for a search" in said[0]


def test_threads_split_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOVISION_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert pool.threads_per_worker(2) == 4 and pool.threads_per_worker(3) == 2
    assert pool.threads_per_worker(16) == 1
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    assert pool.threads_per_worker(2) == 1


def test_stale_trial_is_failed_and_enqueued_again(workspace) -> None:
    from autovision.search import study as studies

    study = studies.open_study(workspace.db_url, "autovision-run-hb", 0, heartbeat=(1, 2))
    trial = study.ask()
    trial.suggest_int("epochs", 2, 8)
    study._storage.record_heartbeat(trial._trial_id)  # then the process "dies"
    time.sleep(3.5)  # the grace period, and SQLite's CURRENT_TIMESTAMP has whole seconds
    pool._fail_stale(study)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[1].state == TrialState.WAITING and trials[1].params == trials[0].params
    assert trials[1].system_attrs["failed_trial"] == 0


def test_a_trial_asked_by_a_worker_beats_at_once(workspace) -> None:
    """A worker killed between ask and its trial's heartbeat thread: the beat recorded at
    ask makes the trial stale (without it Optuna never fails it, and the search waits)."""
    from autovision.search import study as studies

    study = studies.open_study(workspace.db_url, "autovision-run-hb0", 0, heartbeat=(1, 2))
    silent = study.ask()  # asked without a beat: never stale
    timed = pool._TimedStudy(study)
    trial = timed.ask()  # then the process "dies" before training
    time.sleep(3.5)
    pool._fail_stale(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL
    assert states[silent.number] == TrialState.RUNNING


def test_merge_costs_keeps_own_measurements() -> None:
    from autovision.search.planner import CostModel

    cost = CostModel(gpu=False, state={"train": {"a/scratch/16": 1.0}})
    theirs = {"train": {"a/scratch/16": 2.0, "b/scratch/16": 3.0}, "decode": 0.5, "cached": ["x"]}
    pool.merge_costs(cost, theirs, overwrite=False)
    assert cost.train == {"a/scratch/16": 1.0, "b/scratch/16": 3.0}
    assert cost.decode == 0.5 and cost.cached == {"x"}
    pool.merge_costs(cost, theirs, overwrite=True)
    assert cost.train["a/scratch/16"] == 2.0


def test_one_waiting_trial_goes_to_one_worker(workspace) -> None:
    """Workers ask at once (after the start barrier): on SQLite each must pop a different
    waiting trial (``BEGIN IMMEDIATE``; Optuna's ``FOR UPDATE`` is no lock there)."""
    from autovision.search import study as studies

    name = "autovision-run-pop"
    first = studies.open_study(workspace.db_url, name, 0)
    for i in range(3):
        first.enqueue_trial({"x": i})
    n = 8
    barrier = threading.Barrier(n)
    got: list[int] = []

    def ask(study: optuna.Study) -> None:
        barrier.wait()
        got.append(study.ask().number)

    # each with its own storage and connections, as worker processes have
    opened = [studies.open_study(workspace.db_url, name, 0) for _ in range(n)]
    threads = [threading.Thread(target=ask, args=(study,)) for study in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == list(range(n))  # the 3 enqueued (0-2) once each, then new ones
