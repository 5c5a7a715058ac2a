"""``train(..., ray_address=...)`` / ``train --ray``: trial workers as Ray tasks on a
two-node ``ray.cluster_utils.Cluster``; the study in the workspace database stays the record.

The node-removal test runs last: it leaves the module's cluster with its head only.
"""

from __future__ import annotations

import json
import threading
import time
import warnings

import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.search import study as studies
from autovision.search import train
from autovision.search.ray_workers import workers_held
from autovision.search.state import RunState
from tests._ray import ray_cluster

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster() as c:
        yield c


def _study(ws, run_id: str) -> optuna.Study:
    name = RunState(run_id, "", 0, "", 0, {}).study_name
    return optuna.load_study(study_name=name, storage=ws.db_url)


def _run_id(ws, model_id: str) -> str:
    return ws.model(model_id)["run_id"]


def test_workers_held() -> None:
    assert workers_held({"CPU": 2.0}, 1.0, 0.0) == 2
    assert workers_held({"CPU": 8.0, "GPU": 2.0}, 1.0, 1.0) == 2
    assert workers_held({"CPU": 1.0}, 2.0, 0.0) == 1  # at least one
    assert workers_held({"GPU": 4.0}, 0.0, 0.5) == 8


def test_two_workers_on_ray_finish_the_search(
    cluster, workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    monkeypatch.setenv("AUTOVISION_HEARTBEAT_S", "2")
    make_dataset(labels=("a", "b"), counts=(12, 4, 4))
    events: list[dict] = []
    result = train(workspace, "tiny", trials=4, ray_address=cluster.address, progress=events.append)
    assert result.stop_reason == "TRIALS_DONE" and result.trials == 4
    assert [e["workers"] for e in events if e["event"] == "ray_workers"] == [2]
    study = _study(workspace, result.run_id)
    trained = [t for t in study.get_trials() if t.user_attrs.get("trained")]
    workers = {t.user_attrs["worker"] for t in trained}
    assert len(trained) == 4 and len(workers) == 2, workers
    assert all(w.startswith("ray:w") for w in workers)
    assert result.path.joinpath("model.json").is_file()


def test_cli_train_on_ray(cluster, workspace, make_dataset, tiny_space, monkeypatch) -> None:
    monkeypatch.setenv("AUTOVISION_HEARTBEAT_S", "2")
    make_dataset(labels=("a", "b"), counts=(12, 4, 4))
    ws = ["--workspace", str(workspace.root)]
    args = ["train", "tiny", "--trials", "2", "--ray", cluster.address, "--workers", "1"]
    res = runner.invoke(app, [*args, "--cpus-per-trial", "1", *ws, "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "tiny", "--trials", "1", "--gpus-per-trial", "1", *ws])
    assert res.exit_code == 1 and "go with --ray" in res.output


def test_removed_node_its_trial_is_retried(
    cluster, workspace, make_dataset, tiny_space, monkeypatch
) -> None:
    monkeypatch.setenv("AUTOVISION_HEARTBEAT_S", "2")
    # trials of 5-6 epochs: the node goes away after a trial's first epoch, long before its end
    space = {**tiny_space, "epochs": [5, 6]}
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(space))
    make_dataset(labels=("a", "b"), counts=(12, 4, 4))
    node = next(iter(cluster.worker_nodes))
    node_id = node.node_id[:12]
    removed: list[int] = []
    seen: list[str] = []
    events: list[dict] = []
    stop = threading.Event()

    def remove_node_mid_trial() -> None:
        """As soon as a trial runs on the added node, take the node away."""
        storage = None
        while not stop.is_set():
            time.sleep(0.1)
            try:  # the coordinator may still be creating the study's tables
                storage = storage or studies.storage(workspace.db_url)
                running = [
                    t
                    for s in optuna.get_all_study_summaries(storage, False)
                    for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(
                        deepcopy=False, states=(TrialState.RUNNING,)
                    )
                ]
            except Exception as exc:  # noqa: BLE001
                seen.append(repr(exc)[:80])
                continue
            for t in running:
                seen.append(str(t.user_attrs.get("worker")))
                on_node = str(t.user_attrs.get("worker", "")).endswith("@" + node_id)
                if on_node and 1 <= len(t.intermediate_values) <= 2:  # beating, far from done
                    cluster.remove_node(node)
                    removed.append(t.number)
                    return

    killer = threading.Thread(target=remove_node_mid_trial, daemon=True)
    killer.start()
    try:
        result = train(
            workspace, "tiny", trials=6, ray_address=cluster.address, progress=events.append
        )
    finally:
        stop.set()
        killer.join(timeout=30)
    assert removed, f"no trial ran on the added node {node_id}: {sorted(set(seen))[:8]}"
    trials = _study(workspace, result.run_id).get_trials()
    story = [
        (t.number, t.state.name, t.system_attrs.get("failed_trial"), t.user_attrs.get("worker"))
        for t in trials
    ]
    assert result.stop_reason == "TRIALS_DONE" and result.trials == 6, story
    lost = trials[removed[0]]
    assert lost.state == TrialState.FAIL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = [RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials]
    retries = [t for t, n in zip(trials, retried, strict=True) if n == lost.number]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not retries[0].user_attrs["worker"].endswith("@" + node_id)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    (end,) = [e for e in events if e["event"] == "ray_workers_end"]
    assert len(end["reports"]) == 2  # the lost worker was started again by Ray and ended
