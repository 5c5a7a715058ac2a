"""The Train page: a form that starts a training job (run by a worker process, never by the
web server), the list of jobs, and each job's page with its live progress (Server-Sent
Events read from ``jobs.job_events``, with htmx polling of the same fragment as a fallback)
and a cancel button. Over :mod:`autovision.jobs`, as ``autovision jobs`` is."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Header, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from autovision.console.auth import User, audit_as
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.errors import AutovisionError, JobError

router = APIRouter()

BUDGETS = ("1m", "5m", "10m", "30m", "1h", "2h")
"""The wall-clock budgets the form suggests (any ``90s``, ``45m``, ``3h`` is accepted)."""
EXCLUDABLE = (
    ("label_issues", "Label issues", "likely mislabeled (needs dataset check --label-issues)"),
    ("exact_duplicates", "Exact duplicates", "keeps one of each group"),
    ("near_duplicates", "Near duplicates", "keeps one of each group"),
    ("conflicting_labels", "Conflicting labels", "the same image under different labels"),
    ("split_leakage", "Split leakage", "the same image in several splits"),
    ("outliers", "Outliers", "unlike the rest (needs dataset check --outliers)"),
)
"""The issues whose images a training may leave out (``train --exclude-issues``)."""
TASKS = (
    ("auto", "Detected from the version"),
    ("single-label", "Single-label"),
    ("multi-label", "Multi-label"),
)
ACTIVE = ("queued", "running", "interrupted")  # the page keeps following these
FINAL = ("done", "failed", "cancelled")
POLL_S = 0.5  # how often the event stream looks for new events
KEEPALIVE_S = 15.0
STREAM_S = 120.0  # a stream ends after this; the browser reconnects from its last event id
END_GRACE_S = 3.0  # a final status whose closing event is not written yet: wait this long
MAX_TRIALS = 10_000
STOP_REASONS = {
    "TRIALS_DONE": "every trial of the budget ran",
    "BUDGET_REACHED": "the time budget ran out",
    "MODEL_CONVERGED": "the model stopped improving",
}
"""The search's stop reasons in words (an unknown one is shown as it is)."""


def _ws(request: Request) -> Any:
    return console_state(request).ws


def seconds_text(value: Any) -> str:
    """``4.2 s``, ``12:05``, ``1:02:09``; an empty string for no value."""
    if value is None:
        return ""
    if float(value) < 60:
        return f"{max(0.0, float(value)):.1f} s"
    total = max(0, int(round(float(value))))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _budget_text(options: dict[str, Any]) -> str:
    if options.get("trials"):
        n = int(options["trials"])
        return f"{n} trial{'s' if n != 1 else ''}"
    if options.get("node_hours"):
        return f"{options['node_hours']} node-hours"
    return str(options.get("budget") or "30m")


def _helpers() -> dict[str, Any]:
    return {"seconds_text": seconds_text, "budget_text": _budget_text}


# ---- the form and the list -----------------------------------------------------------------


def _form_context(request: Request, form: dict[str, Any] | None = None) -> dict[str, Any]:
    from autovision.data.catalog import list_versions
    from autovision.jobs import list_jobs

    ws = _ws(request)
    versions = list_versions(ws)
    jobs = list_jobs(ws)
    defaults = {
        "dataset": versions[0]["ref"] if versions else "",
        "task": "auto",
        "budget_kind": "time",
        "budget": "10m",
        "trials": "",
        "seed": "0",
        "base_model": "",
        "name": "",
        "exclude_issues": [],
    }
    return {
        "versions": versions,
        "jobs": jobs,
        "following": any(j["status"] in ACTIVE for j in jobs),
        "form": {**defaults, **(form or {})},
        "budgets": BUDGETS,
        "excludable": EXCLUDABLE,
        "tasks": TASKS,
        **_helpers(),
    }


@router.get("/train")
def train_page(
    request: Request, user: Annotated[User, Depends(require("read"))], dataset: str = ""
) -> Response:
    """``?dataset=NAME@N`` (or ``NAME``: its newest version) preselects the version, as the
    monitor page's "Retrain" link does."""
    context = _form_context(request)
    wanted = dataset.strip()
    for v in context["versions"]:  # newest first per dataset: a bare name meets its latest
        if wanted in (v["ref"], v["name"]):
            context["form"]["dataset"] = v["ref"]
            break
    return render(request, "train.html", **context)


@router.get("/train/jobs")
def jobs_table(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    """The jobs table alone (polled while a job is active)."""
    from autovision.jobs import list_jobs

    jobs = list_jobs(_ws(request))
    following = any(j["status"] in ACTIVE for j in jobs)
    return render(request, "_train_jobs.html", jobs=jobs, following=following, **_helpers())


def _options(
    *,
    task: str,
    budget_kind: str,
    budget: str,
    trials: str,
    seed: str,
    base_model: str,
    name: str,
    exclude_issues: list[str],
) -> dict[str, Any]:
    """The form's fields as ``train()`` keyword arguments; a :class:`JobError` saying which
    field is wrong. The library checks the values again (budget text, names, references)."""
    options: dict[str, Any] = {"task": task.strip() or "auto"}
    if budget_kind == "trials":
        try:
            n = int(trials.strip())
        except ValueError:
            raise JobError(f"trials: a whole number, got {trials.strip() or '(empty)'!r}") from None
        if not 1 <= n <= MAX_TRIALS:
            raise JobError(f"trials: between 1 and {MAX_TRIALS}, got {n}")
        options["trials"] = n
    elif budget_kind == "time":
        if not budget.strip():
            raise JobError("budget: give a time such as 10m, 90s or 2h")
        options["budget"] = budget.strip()
    else:
        raise JobError(f"budget: time or trials, got {budget_kind!r}")
    try:
        options["seed"] = int(seed.strip() or "0")
    except ValueError:
        raise JobError(f"seed: a whole number, got {seed.strip()!r}") from None
    if base_model.strip():
        options["base_model"] = base_model.strip()
    if name.strip():
        options["name"] = name.strip()
    issues = sorted({i.strip() for i in exclude_issues if i.strip()})
    if issues:
        options["exclude_issues"] = ",".join(issues)
    return options


@router.post("/train/start")
def start_training(
    request: Request,
    user: Annotated[User, Depends(require("train.start"))],
    dataset: Annotated[str, Form(max_length=200)],
    task: Annotated[str, Form(max_length=20)] = "auto",
    budget_kind: Annotated[str, Form(max_length=10)] = "time",
    budget: Annotated[str, Form(max_length=20)] = "",
    trials: Annotated[str, Form(max_length=10)] = "",
    seed: Annotated[str, Form(max_length=20)] = "0",
    base_model: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=100)] = "",
    exclude_issues: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
) -> Response:
    """Start a training job and go to its page; the form again with the reason when the
    choice cannot train (the same checks as ``autovision train``)."""
    from autovision.jobs import start_training_job

    fields = {
        "task": task,
        "budget_kind": budget_kind,
        "budget": budget,
        "trials": trials,
        "seed": seed,
        "base_model": base_model,
        "name": name,
        "exclude_issues": exclude_issues,
    }
    try:
        options = _options(**fields)
        with audit_as(user):
            job_id = start_training_job(_ws(request), dataset.strip(), user=user.name, **options)
    except AutovisionError as exc:
        context = _form_context(request, {"dataset": dataset, **fields})
        return render(request, "train.html", status_code=400, error=str(exc), **context)
    where = f"/train/jobs/{job_id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)


@router.post("/train/retrain")
def start_retrain(
    request: Request,
    user: Annotated[User, Depends(require("train.start"))],
    name: Annotated[str, Form(max_length=100)],
    budget_kind: Annotated[str, Form(max_length=10)] = "time",
    budget: Annotated[str, Form(max_length=20)] = "10m",
    trials: Annotated[str, Form(max_length=10)] = "",
    alias: Annotated[str, Form(max_length=100)] = "production",
    dataset: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The monitor page's "retrain": the next version of model ``name`` trained from
    ``name@alias`` on its dataset's newest version (or ``dataset``) in a worker, promoted
    past the gate; then the job's page. A form error comes back as a fragment (400)."""
    from autovision.jobs import start_retrain_job

    try:
        options = _options(
            task="auto",
            budget_kind=budget_kind,
            budget=budget,
            trials=trials,
            seed="0",
            base_model="",
            name="",
            exclude_issues=[],
        )
        options.pop("task")
        if alias.strip():
            options["alias"] = alias.strip()
        if dataset.strip():
            options["dataset"] = dataset.strip()
        with audit_as(user):
            job_id = start_retrain_job(_ws(request), name.strip(), user=user.name, **options)
    except AutovisionError as exc:
        return render(
            request, "_error.html", status_code=400, title="Cannot retrain", message=str(exc)
        )
    where = f"/train/jobs/{job_id}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": where})
    return RedirectResponse(where, status_code=303)


# ---- a job ---------------------------------------------------------------------------------


def _job(request: Request, job_id: str) -> dict[str, Any] | None:
    from autovision.jobs import job_status

    try:
        return job_status(_ws(request), job_id)
    except JobError:
        return None


def _job_context(job: dict[str, Any]) -> dict[str, Any]:
    budget = job.get("budget") or {}
    if budget.get("trials"):
        used, total = budget.get("used_trials") or 0, budget["trials"]
        bar = {"value": min(used, total), "max": total, "text": f"{used} of {total} trials"}
    elif budget.get("seconds"):
        used, total = float(budget.get("used_seconds") or 0.0), float(budget["seconds"])
        left = seconds_text(budget.get("left_seconds"))
        bar = {
            "value": min(used, total),
            "max": total,
            "text": f"{seconds_text(used)} of {seconds_text(total)}"
            + (f" ({left} left)" if left and job["status"] in ACTIVE else ""),
        }
    else:
        bar = None
    result = job.get("result") or {}
    model_href = None
    if result.get("name") and result.get("version"):
        model_href = f"/models/{result['name']}/{result['version']}"
    best = job.get("best") or {}
    explored = [t for t in job.get("trials") or [] if t.get("phase") != "refit"]
    return {
        "job": job,
        "bar": bar,
        "explored": len(explored),
        "stop_text": STOP_REASONS.get(job.get("stop_reason") or "", ""),
        "task": result.get("task") or (job.get("options") or {}).get("task") or "auto",
        "model_href": model_href,
        "best_trial": best.get("trial"),
        "active": job["status"] in ACTIVE,
        **_helpers(),
    }


def _missing(request: Request, job_id: str) -> Response:
    return render(
        request,
        "error.html" if not is_htmx(request) else "_error.html",
        status_code=404,
        title="Not found",
        message=f"No training job {job_id}.",
    )


@router.get("/train/jobs/{job_id}")
def job_page(
    request: Request, job_id: str, user: Annotated[User, Depends(require("read"))]
) -> Response:
    job = _job(request, job_id)
    if job is None:
        return _missing(request, job_id)
    return render(request, "train_job.html", **_job_context(job))


@router.get("/train/jobs/{job_id}/progress")
def job_progress(
    request: Request, job_id: str, user: Annotated[User, Depends(require("read"))]
) -> Response:
    """The progress fragment: what the event stream's client and the polling fallback
    swap in."""
    job = _job(request, job_id)
    if job is None:
        return _missing(request, job_id)
    return render(request, "_train_progress.html", **_job_context(job))


def _sse(event: str, data: Any, seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _closing(events: list[dict[str, Any]], status: str) -> bool:
    return any(e.get("event") == "job" and e.get("status") == status for e in events)


async def event_stream(
    ws: Any, job_id: str, after: int, request: Request | None = None
) -> AsyncIterator[str]:
    """The job's events after ``after`` as Server-Sent Events (``event: progress``, the
    ``id`` is the event's ``seq``), then ``event: end`` with the final status once the job
    is done, failed or cancelled. The database is read in a worker thread every
    :data:`POLL_S`; an idle stream sends a comment now and then so proxies keep it open."""
    from autovision.jobs import job_events
    from autovision.jobs.store import get

    seq, started, quiet_since = after, time.monotonic(), time.monotonic()
    final_at: float | None = None
    seen_final: list[dict[str, Any]] = []
    yield "retry: 2000\n\n"
    while True:
        events = await run_in_threadpool(job_events, ws, job_id, seq, 500)
        for e in events:
            seq = e["seq"]
            yield _sse("progress", e, seq)
        if events:
            quiet_since = time.monotonic()
            seen_final += [e for e in events if e.get("event") == "job"]
            if len(events) == 500:
                continue
        status = (await run_in_threadpool(get, ws, job_id))["status"]
        if status in FINAL:
            final_at = final_at or time.monotonic()
            if _closing(seen_final, status) or time.monotonic() - final_at > END_GRACE_S:
                yield _sse("end", {"status": status, "last_seq": seq})
                return
        if request is not None and await request.is_disconnected():
            return
        if time.monotonic() - started > STREAM_S:
            return  # the browser reconnects with Last-Event-ID
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


@router.get("/train/jobs/{job_id}/events")
def job_event_stream(
    request: Request,
    job_id: str,
    user: Annotated[User, Depends(require("read"))],
    after: int = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """``text/event-stream`` of the job's events after ``after`` (or the ``Last-Event-ID``
    a reconnecting browser sends)."""
    if _job(request, job_id) is None:
        return _missing(request, job_id)
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    return StreamingResponse(
        event_stream(_ws(request), job_id, max(0, after), request),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


@router.post("/train/jobs/{job_id}/cancel")
def cancel(
    request: Request, job_id: str, user: Annotated[User, Depends(require("train.start"))]
) -> Response:
    """Stop the job's worker (the search run stays on disk, resumable from the CLI)."""
    from autovision.jobs import cancel_job

    if _job(request, job_id) is None:
        return _missing(request, job_id)
    error = None
    try:
        with audit_as(user):
            cancel_job(_ws(request), job_id)
    except JobError as exc:
        error = str(exc)
    if not is_htmx(request) and error is None:
        return RedirectResponse(f"/train/jobs/{job_id}", status_code=303)
    job = _job(request, job_id)
    assert job is not None
    template = "_train_progress.html" if is_htmx(request) else "train_job.html"
    return render(
        request, template, status_code=409 if error else 200, error=error, **_job_context(job)
    )
