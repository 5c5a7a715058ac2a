"""Background jobs: start a training in a worker process, follow it, cancel it, recover it.

The web server never trains in its own process: :func:`start_training_job` records a job and
starts ``python -m autovision.jobs.worker`` in a session of its own, which outlives the
server. The worker appends the search's progress events and beats a heartbeat; after a
restart :func:`recover_jobs` finds jobs whose worker is gone and resumes them with the
search's own resume (the trials already finished are kept).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from autovision.data.dataset import parse_ref
from autovision.errors import DatasetError, JobError
from autovision.jobs import process, store
from autovision.jobs.store import ACTIVE, CANCELLED, FINAL, INTERRUPTED, QUEUED, RUNNING
from autovision.jobs.summary import summarize
from autovision.security.audit import acting_as, actor, audit_event
from autovision.workspace.db import utcnow

TRAIN = "train"
RETRAIN = "retrain"
_RETRAIN_KWARGS = ("dataset", "budget", "trials", "alias", "min_gain", "seed", "exclude_issues")
HEARTBEAT_S = 5.0  # how often a worker writes its heartbeat
STALE_S = 60.0  # a running job whose heartbeat is older than this has lost its worker
_NOT_KWARGS = ("progress", "ws", "dataset_ref")  # the job's to give, not the caller's
_AUDITED = (
    *("budget", "node_hours", "trials", "task", "base_model", "name", "resume", "seed"),
    "exclude_issues",
)


def heartbeat_s() -> float:
    return float(os.environ.get("AUTOVISION_JOB_HEARTBEAT_S", HEARTBEAT_S))


def stale_s() -> float:
    return float(os.environ.get("AUTOVISION_JOB_STALE_S", STALE_S))


def start_training_job(
    ws: Any, dataset_ref: str, *, user: str | None = None, **train_kwargs: Any
) -> str:
    """Record a training job of ``dataset_ref`` and start its worker; the job id.

    ``train_kwargs`` go to :func:`autovision.search.run.train` as they are (``budget``,
    ``trials``, ``task``, ``name``, ``base_model``, ``seed``, ...; ``space`` as a
    :class:`~autovision.search.space.SearchSpace` or its dict), so they must be JSON values.
    ``user`` is who asked (the console's user); the job's audit lines, the worker's
    included, name them. The dataset and budget are checked here, so a form gets its error
    at once, not from the worker.
    """
    kwargs = _train_kwargs(train_kwargs)
    _check_dataset(ws, dataset_ref)
    check_train_options(ws, kwargs)
    who = {**actor(), **({"user": user} if user else {})}
    params = {"dataset_ref": dataset_ref, "train": kwargs, "actor": who}
    job_id = store.create(ws, TRAIN, params, who.get("user"))
    store.append_event(ws, job_id, {"event": "job", "status": QUEUED, "attempt": 1})
    with acting_as(**who):
        audit_event(
            ws,
            "job.start",
            target=job_id,
            kind=TRAIN,
            dataset=dataset_ref,
            **{k: kwargs[k] for k in _AUDITED if k in kwargs},
        )
    _spawn(ws, job_id)
    return job_id


def start_retrain_job(ws: Any, name: str, *, user: str | None = None, **retrain_kwargs: Any) -> str:
    """Record a retrain of the named model ``name`` and start its worker; the job id.

    The worker runs :func:`autovision.versions.retrain.retrain` (train the next version from
    ``name@alias``, evaluate both, promote past the gate) with ``retrain_kwargs``
    (``dataset``, ``budget``, ``trials``, ``alias``, ``min_gain``, ``seed``,
    ``exclude_issues``). Its progress
    events are the training's, as for a training job. A retrain whose worker is lost starts
    again from the beginning when recovered (a retrain has no resume of its own).
    """
    from autovision.search.budget import Budget
    from autovision.versions import store as versions

    unknown = sorted(set(retrain_kwargs) - set(_RETRAIN_KWARGS))
    if unknown:
        raise JobError(f"a retrain job takes no option {', '.join(map(repr, unknown))}")
    kwargs = _train_kwargs(retrain_kwargs)
    versions.aliases(ws, name)  # a clear error when there is no such model
    if kwargs.get("dataset"):
        _check_dataset(ws, kwargs["dataset"])
    Budget.from_args(kwargs.get("budget", "10m"), None, kwargs.get("trials"))
    if kwargs.get("exclude_issues"):
        from autovision.data.edit import parse_issues

        parse_issues(kwargs["exclude_issues"])
    who = {**actor(), **({"user": user} if user else {})}
    params = {"model": name, "dataset_ref": kwargs.get("dataset"), "train": kwargs, "actor": who}
    job_id = store.create(ws, RETRAIN, params, who.get("user"))
    store.append_event(ws, job_id, {"event": "job", "status": QUEUED, "attempt": 1})
    with acting_as(**who):
        audit_event(ws, "job.start", target=job_id, kind=RETRAIN, model=name, **kwargs)
    _spawn(ws, job_id)
    return job_id


def _train_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if key in _NOT_KWARGS:
            raise JobError(f"a training job sets {key!r} itself")
        if key == "space" and hasattr(value, "to_dict"):
            value = value.to_dict()
        try:
            store.plain(value, strict=True)
        except (TypeError, ValueError) as exc:
            raise JobError(f"training option {key!r}: {exc}") from None
        out[key] = value
    return out


def _check_dataset(ws: Any, ref: str) -> None:
    name, version = parse_ref(ref)
    versions = ws.versions(name)  # DatasetError when there is no such dataset
    if not versions:
        raise DatasetError(f"dataset {name!r} has no version")
    if version is not None and version not in versions:
        raise DatasetError(f"dataset {name!r} has no version {version}")


def check_train_options(ws: Any, options: dict[str, Any]) -> None:
    """Raise the error the worker would meet later for a bad budget, task, model name, base
    model or issue name (a form shows it at once). Cheap: nothing is loaded but the base
    model's registry row. Whether a model-based issue was computed for the version is left
    to the training (it needs the dataset loaded)."""
    from autovision.data.edit import parse_issues
    from autovision.search.budget import Budget  # light: no torch
    from autovision.search.prepare import TASKS
    from autovision.versions.refs import check_model_name

    if not options.get("resume"):
        Budget.from_args(options.get("budget"), options.get("node_hours"), options.get("trials"))
    task = options.get("task", "auto")
    if task not in TASKS:
        raise JobError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise JobError(f"the seed must be a whole number, got {seed!r}")
    if options.get("name") is not None:
        check_model_name(options["name"])
    if options.get("base_model"):
        ws.model(options["base_model"])  # ModelError naming the reference when it is unknown
    if options.get("exclude_issues"):
        parse_issues(options["exclude_issues"])


def _spawn(ws: Any, job_id: str) -> None:
    try:
        pid = process.spawn(ws, job_id)
    except OSError as exc:
        _finish(ws, job_id, store.FAILED, error=f"cannot start the worker: {exc}")
        raise JobError(f"job {job_id}: cannot start the worker: {exc}") from exc
    # the worker writes its own pid when it takes the job; this covers the seconds before
    store.set_fields(ws, job_id, when=(QUEUED,), pid=pid, host=store.this_host())


def _finish(ws: Any, job_id: str, status: str, **fields: Any) -> bool:
    done = store.set_fields(ws, job_id, when=ACTIVE, status=status, finished_at=utcnow(), **fields)
    if done:
        store.append_event(ws, job_id, {"event": "job", "status": status, **fields})
    return done


# ---- reading -------------------------------------------------------------------------------


def job_status(ws: Any, job_id: str) -> dict[str, Any]:
    """The job (``id``, ``kind``, ``status``, ``user``, times, ``attempts``, ``error``,
    ``result``) and its progress: ``trials``, ``current``, ``best``, ``budget``,
    ``stop_reason``, ``model`` (``NAME@VERSION``) and ``last_seq`` (poll events after it)."""
    process.reap()
    job = store.get(ws, job_id)
    events = store.events(ws, job_id)
    job["dataset"] = job["params"].get("dataset_ref")
    return {**_public(job), **summarize(job, events)}


def job_events(
    ws: Any, job_id: str, after_seq: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """The job's events after ``after_seq``, oldest first, each with its ``seq`` and ``at``
    (for polling or Server-Sent Events: pass the last ``seq`` seen)."""
    store.get(ws, job_id)  # JobError for an unknown id
    return store.events(ws, job_id, after_seq, limit)


def list_jobs(ws: Any, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """Jobs, newest first: id, kind, status, dataset, user, times and the resulting model."""
    if status is not None and status not in store.STATUSES:
        raise JobError(f"unknown job status {status!r} (one of {', '.join(store.STATUSES)})")
    out = []
    for job in store.rows(ws, kind=kind, statuses=None if status is None else (status,)):
        result = job.get("result") or {}
        job["dataset"] = job["params"].get("dataset_ref")
        job["model"] = f"{result['name']}@{result['version']}" if result.get("name") else None
        out.append(_public(job))
    return out


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """What a page may show: not the worker's environment (the actor's key id stays)."""
    params = job.pop("params")
    job["options"] = params.get("train", {})
    if params.get("model"):
        job["retrain_of"] = params["model"]  # a retrain job: the named model it continues
    return job


# ---- cancel and recover --------------------------------------------------------------------


def cancel_job(ws: Any, job_id: str) -> dict[str, Any]:
    """Stop a queued, running or interrupted job: ``cancelled`` (never resumed), its
    worker's process group terminated. Its search run stays unfinished on disk (``autovision
    train NAME --resume`` can still continue it). Cancelling a cancelled job is a no-op."""
    job = store.get(ws, job_id)
    if job["status"] == CANCELLED:
        return job_status(ws, job_id)
    if job["status"] in FINAL:
        raise JobError(f"job {job_id} is already {job['status']}: nothing to cancel")
    when = (QUEUED, RUNNING, INTERRUPTED)
    if not store.set_fields(ws, job_id, when=when, status=CANCELLED, finished_at=utcnow()):
        now = store.get(ws, job_id)["status"]
        if now == CANCELLED:
            return job_status(ws, job_id)
        raise JobError(f"job {job_id} is already {now}: nothing to cancel")
    store.append_event(ws, job_id, {"event": "job", "status": CANCELLED})
    gone = process.stop(job["pid"], job_id)
    audit_event(ws, "job.cancel", target=job_id, kind=job["kind"], stopped=gone)
    return job_status(ws, job_id)


def _stale(job: dict[str, Any], limit_s: float) -> str | None:
    """Why an active job has lost its worker (None: it has not)."""
    now = utcnow()
    if job["host"] not in (None, store.this_host()):  # a worker elsewhere: its heartbeat tells
        alive = True
    else:
        alive = process.alive(job["pid"], job["id"])
    if job["status"] == QUEUED:
        if job["pid"] and not alive:
            return f"worker {job['pid']} exited before it started"
        created = store.aware_iso(job["created_at"])
        if not job["pid"] and created < now - timedelta(seconds=limit_s):
            return "no worker was started"
        return None
    if not alive:
        return f"worker {job['pid']} is gone" if job["pid"] else "no worker"
    beat = store.aware_iso(job["heartbeat_at"] or job["started_at"] or job["created_at"])
    if beat < now - timedelta(seconds=limit_s):
        return f"no heartbeat for {int((now - beat).total_seconds())}s"
    return None


def recover_jobs(
    ws: Any, *, resume: bool = True, stale_after_s: float | None = None
) -> list[dict[str, Any]]:
    """At a console start: jobs whose worker is gone (pid not running, or no heartbeat for
    ``stale_after_s``) become ``interrupted``, then (``resume``) go on in a new worker with
    the search's own resume. Cancelled, done and failed jobs are left alone; so are the jobs
    another console is recovering at the same moment (each change is conditional on the
    status it found). Returns ``[{"id", "action": "interrupted"|"resumed", "why"}]``."""
    limit_s = stale_s() if stale_after_s is None else stale_after_s
    actions = []
    for job in store.rows(ws, statuses=(QUEUED, RUNNING, INTERRUPTED)):
        job_id = job["id"]
        if job["status"] in ACTIVE:
            why = _stale(job, limit_s)
            if why is None:
                continue
            if job["host"] in (None, store.this_host()) and process.alive(job["pid"], job_id):
                # hung: stop it before another starts
                process.stop(job["pid"], job_id)
            if not store.set_fields(
                ws, job_id, when=(job["status"],), expect_pid=job["pid"], status=INTERRUPTED
            ):
                continue  # it moved on meanwhile (finished, cancelled, recovered elsewhere)
            store.append_event(ws, job_id, {"event": "job", "status": INTERRUPTED, "why": why})
            audit_event(ws, "job.interrupted", target=job_id, kind=job["kind"], why=why)
            actions.append({"id": job_id, "action": INTERRUPTED, "why": why})
        if resume and _requeue(ws, job):
            actions.append({"id": job_id, "action": "resumed", "why": "worker restarted"})
    return actions


def _requeue(ws: Any, job: dict[str, Any]) -> bool:
    job_id = job["id"]
    if not store.set_fields(ws, job_id, when=(INTERRUPTED,), status=QUEUED, pid=None):
        return False
    attempt = int(store.get(ws, job_id)["attempts"]) + 1
    store.append_event(ws, job_id, {"event": "job", "status": QUEUED, "attempt": attempt})
    audit_event(ws, "job.resume", target=job_id, kind=job["kind"], attempt=attempt)
    _spawn(ws, job_id)
    return True
