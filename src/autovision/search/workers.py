"""Trials of one search on many workers (Optuna's distributed mode: many processes, one study).

The coordinator (``train(..., workers=N)``) enqueues the strong defaults, publishes the run in
the study's user attributes and starts N worker processes; each worker (:func:`run_worker`,
here or on another machine through ``autovision worker``) rebuilds the run's data from the
workspace database and blobs, then asks the study for a trial, trains it under its own
deadline from the planner and tells the result, until the exploration ends. The enqueued
defaults are popped first, one per ask, so they spread over the workers. The final
retraining, the refit and the package stay in the coordinator.

A worker that dies stops beating (Optuna's heartbeat on the RDB storage); after the grace
period the coordinator (the only process that checks, so a trial is retried once, not once per
worker that noticed) fails its trial and
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` enqueues it once more. Completed
trials are in the database the moment they are told, so none is lost.

What a worker needs is in the study: the run (``autovision_run``), the budget clock
(``autovision_clock``: wall-clock zero, heartbeat), the exploration's fidelity, the stop
reason and each worker's cost measurements, so a worker needs only the database URL, the blob
URL and a workspace root of its own (checkpoints go under it; see the README for what must be
shared).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autovision.errors import TrainingError
from autovision.search import study as studies
from autovision.search.planner import CostModel
from autovision.search.search import BUDGET_REACHED, TRIALS_DONE, Search
from autovision.search.state import RunState

RUN_ATTR = "autovision_run"  # the run state (RunState as a dict)
CLOCK_ATTR = "autovision_clock"  # {"zero": epoch s, "heartbeat": [i, g], "open": bool, ...}
STOP_ATTR = "autovision_stop"  # the reason the exploration ended (workers stop asking)
EXPLORE_ATTR = "autovision_explore"  # the exploration's fidelity, fixed by the first plan
COSTS_PREFIX = "autovision_costs:"  # + worker name: its cost measurements
READY_PREFIX = "autovision_ready:"  # + worker name: it has its data and waits for GO_ATTR
GO_ATTR = "autovision_go"  # the workers start asking (all ready): the defaults spread over them
START_WAIT_S = 120.0  # the most the ready workers wait for the others to start
ENV_HEARTBEAT = "AUTOVISION_HEARTBEAT_S"
HEARTBEAT_S = 10  # Optuna's heartbeat interval; a trial is stale after GRACE_FACTOR of them
GRACE_FACTOR = 3
POLL_S = 0.5
JOIN_POLL_S = 2.0


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds: ``AUTOVISION_HEARTBEAT_S`` or 10 s, 3 beats."""
    raw = os.environ.get(ENV_HEARTBEAT, "").strip()
    interval = int(raw) if raw.isdigit() and int(raw) > 0 else HEARTBEAT_S
    return interval, GRACE_FACTOR * interval


def threads_per_worker(workers: int) -> int:
    """On a CPU machine the workers split the cores (``AUTOVISION_THREADS`` caps it)."""
    from autovision.search.trainer import ENV_THREADS

    share = max(1, (os.cpu_count() or 1) // max(1, workers))
    raw = os.environ.get(ENV_THREADS, "").strip()
    return min(share, int(raw)) if raw.isdigit() and int(raw) > 0 else share


@dataclass
class WorkerReport:
    """What one worker did (JSON-able: :meth:`to_dict`)."""

    worker: str
    run_id: str
    pid: int
    host: str
    trials: list[int] = field(default_factory=list)  # numbers of the trials it trained
    states: dict[str, int] = field(default_factory=dict)  # COMPLETE / PRUNED / FAIL counts
    stop_reason: str | None = None
    start_s: float = 0.0  # from the call to the first ask (imports, data, study)
    seconds: float = 0.0  # the whole call
    ask_s: float | None = None  # mean latency of study.ask / study.tell
    tell_s: float | None = None
    asks: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _TimedStudy:
    """The study, with ask and tell timed (the per-trial overhead of the shared storage)."""

    def __init__(self, study: Any) -> None:
        self._study = study
        self.ask_s: list[float] = []
        self.tell_s: list[float] = []

    def ask(self, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = self._study.ask(*a, **kw)
        self.ask_s.append(time.perf_counter() - t)
        # beat once now: a worker killed before its trial's heartbeat thread starts would
        # leave a RUNNING trial with no beat at all, which Optuna never finds stale
        from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

        storage = self._study._storage
        if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
            storage.record_heartbeat(out._trial_id)
        return out

    def tell(self, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = self._study.tell(*a, **kw)
        self.tell_s.append(time.perf_counter() - t)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _fail_stale(study: Any) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class WorkerSearch(Search):
    """The exploration loop of :class:`Search` in a worker: the budget clock is the run's
    (wall clock, from the study), the state is the study's, not a file of this machine."""

    def __init__(
        self, *a: Any, clock: dict[str, Any], deadline: float | None, worker: str, **kw: Any
    ) -> None:
        super().__init__(*a, **kw)
        self.zero = float(clock["zero"])
        self.deadline = deadline
        self.worker = worker
        self.study: Any = None
        self.trials_full = False

    def spent(self) -> float:
        return time.time() - self.zero

    def time_left(self) -> float | None:
        left = None if self.budget.seconds is None else self.budget.seconds - self.spent()
        if self.deadline is not None:
            mine = self.deadline - time.time()
            left = mine if left is None else min(left, mine)
        return left

    def save_state(self, force: bool = True) -> None:
        """Costs and fidelity into the study (after each trial); the run's file is the
        coordinator's."""
        if not force or self.study is None:
            return
        self.state.costs = self.cost.to_dict()
        self.study.set_user_attr(COSTS_PREFIX + self.worker, self.state.costs)
        self._publish_fidelity()

    def _publish_fidelity(self) -> None:
        if self.state.explore and EXPLORE_ATTR not in self.study.user_attrs:
            self.study.set_user_attr(EXPLORE_ATTR, self.state.explore)

    def _over_trials(self, study: Any, trial: Any) -> bool:
        """Whether ``trial`` is past a ``--trials`` budget: workers check and ask at once, so
        the trials after the first N (by number) among the trained and running give way."""
        from optuna.trial import TrialState

        if self.budget.trials is None:
            return False
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        counted = sorted({t.number for t in [*studies.trained(study), *running]})
        return trial.number in counted[self.budget.trials :]

    def run_trial(self, study: Any, trial: Any, cfg: Any, plan: Any, phase: str) -> Any:
        if self._over_trials(study, trial):
            self._skip(study, trial, cfg, "the trials budget is reached")
            self.trials_full = True
            return None
        self._publish_fidelity()  # the first plan fixed it: the other workers follow
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("worker_pid", os.getpid())
        return super().run_trial(study, trial, cfg, plan, phase)

    def _explore_stop(self, study: Any, skips: int, search_total: float) -> str | None:
        attrs = study.user_attrs
        if attrs.get(STOP_ATTR):
            return str(attrs[STOP_ATTR])
        if not self.state.explore and attrs.get(EXPLORE_ATTR):
            self.state.explore = dict(attrs[EXPLORE_ATTR])
        for key, costs in attrs.items():  # what the others measured, where this one has none
            if key.startswith(COSTS_PREFIX) and key != COSTS_PREFIX + self.worker:
                merge_costs(self.cost, costs, overwrite=False)
        self.sync_best(study)
        if self.deadline is not None and time.time() >= self.deadline:
            return BUDGET_REACHED  # this worker's own deadline: the others go on
        if self.trials_full:
            return TRIALS_DONE
        if self.budget.trials is not None and self._trials_taken(study):
            return TRIALS_DONE
        reason = super()._explore_stop(study, skips, search_total)
        if reason is not None and not study.user_attrs.get(STOP_ATTR):
            study.set_user_attr(STOP_ATTR, reason)
        return reason

    def _trials_taken(self, study: Any) -> bool:
        """Whether the ``--trials`` budget is taken. While trials running on other workers
        fill it, wait for them rather than stop: a dead worker's trial goes stale, is failed
        and retried (a waiting trial), and this worker trains the retry."""
        from optuna.trial import TrialState

        while True:
            trained = len(studies.trained(study))
            if trained >= self.budget.trials:
                return True
            if studies.waiting(study):
                return False
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if trained + len(running) < self.budget.trials:
                return False
            if study.user_attrs.get(STOP_ATTR) or (
                self.deadline is not None and time.time() >= self.deadline
            ):
                return True
            time.sleep(POLL_S)  # the coordinator fails stale trials (only it: one retry each)

    def work(self, study: _TimedStudy) -> str:
        self.study = study
        self.sync_best(study)
        return self._explore(study)


def _host() -> str:
    return socket.gethostname() or "localhost"


def load_run(db_url: str, run_id: str) -> tuple[Any, RunState, dict[str, Any]]:
    """The run's study (no heartbeat), state and clock; :class:`TrainingError` when the run
    is not open to workers."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = RunState(run_id, "", 0, "", 0, {}).study_name
    try:
        study = optuna.load_study(study_name=name, storage=studies.storage(db_url))
    except KeyError:
        raise TrainingError(f"no search {run_id} in {_safe_url(db_url)}") from None
    attrs = study.user_attrs
    if RUN_ATTR not in attrs or CLOCK_ATTR not in attrs:
        raise TrainingError(f"search {run_id} was not started with workers (--workers N)")
    d = attrs[RUN_ATTR]
    known = set(RunState.__dataclass_fields__)
    state = RunState(**{k: v for k, v in d.items() if k in known})
    return study, state, attrs[CLOCK_ATTR]


def _safe_url(url: str) -> str:
    """``url`` without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: show as given
        return url


def open_runs(db_url: str) -> list[str]:
    """Run ids of the searches that workers can join now, oldest first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = []
    for s in optuna.get_all_study_summaries(studies.storage(db_url), include_best_trial=False):
        attrs = s.user_attrs
        clock = attrs.get(CLOCK_ATTR) or {}
        if clock.get("open") and not attrs.get(STOP_ATTR) and RUN_ATTR in attrs:
            out.append((clock.get("zero", 0.0), attrs[RUN_ATTR]["run_id"]))
    return [run_id for _, run_id in sorted(out)]


def wait_for_run(
    db_url: str,
    run_id: str | None = None,
    *,
    timeout: float | None = 600.0,
    on_wait: Any = None,
) -> str:
    """The run id to join: ``run_id`` once it is open, or the newest open search; waits up
    to ``timeout`` seconds (``on_wait(message)`` once, when it must wait)."""
    start = time.monotonic()
    told = False
    while True:
        runs = open_runs(db_url)
        if run_id is None and runs:
            return runs[-1]
        if run_id is not None and run_id in runs:
            return run_id
        if run_id is not None:  # finished already?
            try:
                study, _, _ = load_run(db_url, run_id)
                if study.user_attrs.get(STOP_ATTR):
                    raise TrainingError(f"search {run_id} has finished its exploration")
            except TrainingError as exc:
                if "finished" in str(exc):
                    raise
        if not told and on_wait is not None:
            which = f"search {run_id}" if run_id else "a search (autovision train --workers N)"
            on_wait(f"waiting for {which} in {_safe_url(db_url)}...")
            told = True
        if timeout is not None and time.monotonic() - start >= timeout:
            which = f"search {run_id}" if run_id else "a search started with --workers"
            raise TrainingError(
                f"waited {timeout:.0f} s for {which} in {_safe_url(db_url)}; none is running"
            )
        time.sleep(JOIN_POLL_S)


def run_worker(
    workspace_root: str,
    db_url: str | None,
    blob_url: str | None,
    run_id: str,
    threads: int | None = None,
    deadline: float | None = None,
    worker: str | None = None,
) -> WorkerReport:
    """Join search ``run_id`` as one trial worker until its exploration ends (or, with
    ``deadline``, a wall-clock ``time.time()``, until then). Plain JSON-able arguments, so
    a process pool or a Ray task can call it; ``threads``: CPU threads for its trials
    (default: every core or ``AUTOVISION_THREADS``). ``db_url``/``blob_url``: the
    workspace's (default: ``AUTOVISION_DB_URL``/``AUTOVISION_BLOB_URL``, else the ones under
    ``workspace_root``)."""
    t0 = time.time()
    if threads:
        from autovision.search.trainer import ENV_THREADS

        os.environ[ENV_THREADS] = str(int(threads))
    name = worker or f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:4]}"
    report = WorkerReport(worker=name, run_id=run_id, pid=os.getpid(), host=_host())
    from autovision.workspace import Workspace

    ws = Workspace(workspace_root, db_url=db_url, blob_url=blob_url)
    plain, state, clock = load_run(ws.db_url, run_id)
    if plain.user_attrs.get(STOP_ATTR):
        report.stop_reason = str(plain.user_attrs[STOP_ATTR])
        report.seconds = time.time() - t0
        return report
    search = _worker_search(ws, state, clock, deadline, name)
    study = _TimedStudy(search.open_study())
    _ready_and_wait(study, name)
    report.start_s = time.time() - t0
    try:
        report.stop_reason = search.work(study)
    finally:
        report.seconds = time.time() - t0
        report.asks = len(study.ask_s)
        report.ask_s = float(np.mean(study.ask_s)) if study.ask_s else None
        report.tell_s = float(np.mean(study.tell_s)) if study.tell_s else None
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("worker") == name:
                report.trials.append(t.number)
                report.states[t.state.name] = report.states.get(t.state.name, 0) + 1
    return report


def _ready_and_wait(study: Any, name: str) -> None:
    """Say this worker is ready, then wait until the coordinator says go (every worker it
    started is ready), so that the enqueued defaults spread over them."""
    session = (study.user_attrs.get(CLOCK_ATTR) or {}).get("session")
    study.set_user_attr(READY_PREFIX + name, {"session": session, "time": time.time()})
    end = time.monotonic() + START_WAIT_S
    while time.monotonic() < end:
        attrs = study.user_attrs
        if attrs.get(GO_ATTR) or attrs.get(STOP_ATTR):
            return
        time.sleep(0.1)


def _worker_search(
    ws: Any, state: RunState, clock: dict[str, Any], deadline: float | None, name: str
) -> WorkerSearch:
    from autovision.search.budget import Budget
    from autovision.search.exclude import training_view
    from autovision.search.prepare import prepare_data
    from autovision.search.run import _import_libraries, _load_base
    from autovision.search.space import SearchSpace
    from autovision.search.trainer import Runtime

    _import_libraries()
    dv = ws.dataset(f"{state.dataset}@{state.dataset_version}")
    if state.excluded:
        dv = training_view(dv, state.excluded["ids"])
    data = prepare_data(dv, task=state.task, seed=state.seed)
    base = _load_base(ws, state.base_model, data) if state.base_model else None
    budget = Budget.from_dict(state.budget)
    deterministic = budget.trials is not None and not budget.timed
    rt = Runtime.create(ws, data, deterministic=deterministic, base=base)
    hb = clock.get("heartbeat")
    return WorkerSearch(
        rt,
        state,
        SearchSpace.from_dict(state.space),
        budget,
        heartbeat=tuple(hb) if hb else None,
        clock=clock,
        deadline=deadline,
        worker=name,
    )


# ---- the coordinator ------------------------------------------------------------------------


def _spawn(kw: dict[str, Any], out: Path) -> subprocess.Popen:
    """A fresh interpreter running :func:`_process_main` (no fork of this process's threads
    and torch state, and no re-import of the caller's ``__main__``); its output goes to
    ``out`` with ``.log``."""
    code = "import sys, json; from autovision.search.workers import _process_main; "
    code += "_process_main(json.loads(sys.argv[1]), sys.argv[2])"
    log = open(out.with_suffix(".log"), "wb")  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(kw), str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()


def _process_main(kw: dict[str, Any], out: str) -> None:
    """A worker process: :func:`run_worker`, its report written to ``out``."""
    try:
        report = run_worker(**kw).to_dict()
    except BaseException as exc:  # noqa: BLE001 - reported to the coordinator, then exits 1
        report = {"worker": kw.get("worker"), "error": f"{type(exc).__name__}: {exc}"}
        Path(out).write_text(json.dumps(report))
        raise SystemExit(1) from None
    Path(out).write_text(json.dumps(report))


def publish(search: Search, study: Any, workers: int) -> None:
    """Open the run to workers: its state, the budget clock and the heartbeat in the study."""
    state = search.state
    study.set_user_attr(GO_ATTR, None)  # a resumed run: its workers start afresh
    study.set_user_attr(STOP_ATTR, None)
    study.set_user_attr(RUN_ATTR, asdict(state))
    study.set_user_attr(
        CLOCK_ATTR,
        {
            "zero": time.time() - search.spent(),
            "heartbeat": list(search.heartbeat) if search.heartbeat else None,
            "open": True,
            "workers": workers,
            "coordinator": f"{_host()}:{os.getpid()}",
            "session": uuid.uuid4().hex,
        },
    )


def coordinate(
    search: Search,
    study: Any,
    *,
    workers: int,
    spawn: bool = True,
    alive: Callable[[], bool] | None = None,
) -> str:
    """Run the exploration of ``search`` on ``workers`` local processes (``spawn=False``:
    none, only workers that join through ``autovision worker``); returns the stop reason
    once they have all ended. Their cost measurements and fidelity become the search's.
    ``alive``: whether workers started elsewhere (Ray tasks) are still running; the
    exploration ends when they have all ended, as with local processes."""
    publish(search, study, workers)
    ws, state = search.rt.ws, search.state
    folder = state.dir(ws) / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    threads = threads_per_worker(workers)
    procs: list[tuple[Any, Path, float]] = []
    for i in range(workers if spawn else 0):
        name = f"{_host()}:w{i}:{uuid.uuid4().hex[:4]}"
        kw = {
            "workspace_root": str(ws.root),
            "db_url": ws.db_url,
            "blob_url": ws.blobs.url,
            "run_id": state.run_id,
            "threads": threads,
            "worker": name,
        }
        out = folder / f"{name.replace(':', '_')}.json"
        spawned = time.time()
        procs.append((_spawn(kw, out), out, spawned))
    search._emit("workers_start", workers=workers, threads=threads)
    try:
        return _supervise(search, study, workers, procs, spawn, alive)
    except BaseException:  # interrupted: the workers stop asking; local ones are ended
        study.set_user_attr(STOP_ATTR, "interrupted")
        for p, _, _ in procs:
            if p.poll() is None:
                p.terminate()
        raise


def _supervise(
    search: Search,
    study: Any,
    workers: int,
    procs: list[Any],
    spawn: bool,
    alive: Callable[[], bool] | None = None,
) -> str:
    """Wait for the workers (failing stale trials, reporting finished ones), then take their
    measurements; returns the stop reason."""
    state = search.state
    started = time.monotonic()
    seen: set[int] = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def running() -> bool:
        if any(p.poll() is None for p, _, _ in procs):
            return True
        if alive is not None:
            return alive()
        return not spawn and _open(search, study)

    while running():
        _fail_stale(study)
        _go_when_ready(study, workers, procs, started)
        seen = _emit_finished(search, study, seen)
        search.save_state(force=False)
        time.sleep(POLL_S)
    if not study.user_attrs.get(STOP_ATTR):
        study.set_user_attr(STOP_ATTR, _fallback_reason(search, study))
    from optuna.trial import TrialState

    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        _fail_stale(study)  # joined workers finish their trial; dead ones go stale
        seen = _emit_finished(search, study, seen)
        time.sleep(POLL_S)
    _emit_finished(search, study, seen)
    search.reports = [_read_report(p, out, spawned) for p, out, spawned in procs]
    clock = dict(study.user_attrs[CLOCK_ATTR], open=False)
    study.set_user_attr(CLOCK_ATTR, clock)
    _adopt(search, study)
    state.phase, state.stop_reason = "final", str(study.user_attrs[STOP_ATTR])
    search.save_state()
    errors = [r["error"] for r in search.reports if r.get("error")]
    if errors and len(errors) == len(procs) and studies.best_number(study) is None:
        raise TrainingError(f"every trial worker failed (first: {errors[0]})")
    return str(study.user_attrs[STOP_ATTR])


def _go_when_ready(study: Any, workers: int, procs: list[Any], started: float) -> None:
    """Let the workers start asking once ``workers`` are ready (or one ended, or
    ``START_WAIT_S`` passed)."""
    attrs = study.user_attrs
    if attrs.get(GO_ATTR):
        return
    session = attrs[CLOCK_ATTR].get("session")
    ready = sum(
        k.startswith(READY_PREFIX) and isinstance(v, dict) and v.get("session") == session
        for k, v in attrs.items()
    )
    ended = any(p.poll() is not None for p, _, _ in procs)
    if ready >= workers or ended or time.monotonic() - started >= START_WAIT_S:
        study.set_user_attr(GO_ATTR, time.time())


def _open(search: Search, study: Any) -> bool:
    """Whether workers that joined may still ask (no stop reason, time left)."""
    left = search.time_left()
    return not study.user_attrs.get(STOP_ATTR) and (left is None or left > 0)


def _fallback_reason(search: Search, study: Any) -> str:
    """The stop reason when every worker ended without one (killed, failed)."""
    trials = search.budget.trials
    if trials is not None and len(studies.trained(study)) >= trials:
        return TRIALS_DONE
    return BUDGET_REACHED


def _read_report(p: Any, out: Path, spawned: float) -> dict[str, Any]:
    code = p.wait()
    try:
        report = json.loads(out.read_text())
    except (OSError, ValueError):
        log = out.with_suffix(".log")
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        why = f": {tail[0]}" if tail else ""
        report = {"error": f"worker process {p.pid} ended with exit code {code}{why}"}
    report["exitcode"] = code
    report["spawned"] = spawned
    return report


def _emit_finished(search: Search, study: Any, seen: set[int]) -> set[int]:
    """Progress events for the trials the workers finished since the last call."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished() or t.number in seen:
            continue
        seen.add(t.number)
        a = t.user_attrs
        state = t.state.name
        if t.state == TrialState.PRUNED and a.get("skipped"):
            state = "SKIPPED"
        best = studies.best_number(study)
        search._emit(
            "trial_end",
            trial=t.number,
            state=state,
            score=t.value,
            config=a.get("config"),
            worker=a.get("worker"),
            best=study.best_value if best is not None else None,
            why=a.get("skipped") or a.get("error"),
            ranking=a.get("ranking"),
        )
    return seen


def merge_costs(cost: CostModel, costs: dict[str, Any], *, overwrite: bool) -> None:
    """Add another worker's measurements (``CostModel.to_dict``) to ``cost`` (``overwrite``:
    theirs win where both measured)."""
    for table in ("train", "eval", "embed"):
        mine: dict[str, float] = getattr(cost, table)
        for key, value in (costs.get(table) or {}).items():
            if overwrite or key not in mine:
                mine[key] = value
    if costs.get("decode") is not None and (overwrite or cost.decode is None):
        cost.decode = costs["decode"]
    cost.cached |= set(costs.get("cached") or [])


def _adopt(search: Search, study: Any) -> None:
    """The workers' cost measurements and fidelity, for the final retraining and refit."""
    state, attrs = search.state, study.user_attrs
    cost = CostModel(gpu=search.rt.gpu, state=state.costs)
    for key, costs in attrs.items():
        if key.startswith(COSTS_PREFIX):
            merge_costs(cost, costs, overwrite=True)
    state.costs = cost.to_dict()
    search.planner.cost = cost
    if attrs.get(EXPLORE_ATTR):
        state.explore = dict(attrs[EXPLORE_ATTR])
    state.trials_done = len(studies.trained(study))
    search.save_state()


def explore_on(workers: int) -> Any:
    """The ``explore`` function of :class:`Search` that runs ``workers`` local processes."""
    if workers < 1:
        raise TrainingError(f"--workers must be at least 1 (got {workers})")

    def explore(search: Search, study: Any) -> str:
        return coordinate(search, study, workers=workers)

    return explore
