"""The Monitor page: prediction volume and confidence over time, the latest drift checks
with their plots, the review queue (keyboard: number keys pick a label, Enter confirms the
model's guess, S skips; each answer swaps in the next item), reviewed images into a new
dataset version, and "Retrain" (the Train page with that version preselected: the jobs
library has no retrain kind yet)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from autovision.console import charts_monitor as charts
from autovision.console.auth import User, audit_as
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.errors import AutovisionError

router = APIRouter()
WINDOWS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
IMAGE_SIZE = 384


def _names(ws: Any) -> list[str]:
    """Model names with versions or logged predictions."""
    from autovision.versions.store import names
    from autovision.workspace.db import PredictionLogRow

    with ws.Session() as s:
        logged = set(s.scalars(select(PredictionLogRow.name).distinct()))
    return sorted((set(names(ws)) | logged) - {""})


def _known(ws: Any, name: str) -> None:
    if name not in _names(ws):
        raise _NotFound(f"No model named {name!r} has versions or logged predictions.")


class _NotFound(Exception):
    pass


def _versions(ws: Any, name: str) -> list[Any]:
    from autovision.versions.store import list_versions

    return sorted(list_versions(ws, name), key=lambda mv: -mv.version)


def _charts(ws: Any, name: str, window: str) -> dict[str, Any]:
    from autovision.monitoring.timeline import timeline

    tl = timeline(ws, name, since=window)
    fmt = "%m-%d %H:00" if tl["bucket"] == "hour" else "%Y-%m-%d"
    ticks = [datetime.fromisoformat(p["start"]).strftime(fmt) for p in tl["points"]]
    return {
        "timeline": tl,
        "volume_chart": charts.line_chart(
            [p["count"] for p in tl["points"]], ticks, title=f"Predictions per {tl['bucket']}"
        ),
        "confidence_chart": charts.line_chart(
            [p["mean_confidence"] for p in tl["points"]],
            ticks,
            title=f"Mean top-1 confidence per {tl['bucket']}",
            y_max=1.0,
            color="#15803d",
        ),
    }


def _drift_plots(check: dict[str, Any]) -> list[Any]:
    plots = check.get("plots") or {}
    out = []
    if plots.get("labels"):
        lab = plots["labels"]
        out.append(
            charts.paired_bars(
                lab["names"], lab["reference"], lab["recent"], title="Predicted labels (share)"
            )
        )
    hists = plots.get("histograms") or {}
    for key in ("confidence", *sorted(k for k in hists if k != "confidence")):
        if key in hists:
            title = "Top-1 confidence" if key == "confidence" else key.removeprefix("input:")
            out.append(charts.histogram(hists[key], title=title))
    return out


def _drift_context(ws: Any, name: str) -> dict[str, Any]:
    from autovision.monitoring.history import latest_checks

    checks = latest_checks(ws, name)
    for c in checks:
        c["charts"] = _drift_plots(c)
        c["failing"] = [t["name"] for t in c.get("tests", []) if t["verdict"] == "drift"]
    return {"checks": checks, "versions": _versions(ws, name)}


def _review_context(ws: Any, name: str) -> dict[str, Any]:
    from autovision.monitoring import review

    q = review.queue(ws, name, limit=1)
    item = q["items"][0] if q["items"] else None
    choices: list[dict[str, Any]] = []
    multi = False
    if item is not None:
        multi = review._Models(ws).multi_label(item["model"])
        scores = item["scores"] if isinstance(item["scores"], dict) else {}
        for i, (label, p) in enumerate(scores.items()):
            choices.append(
                {
                    "label": label,
                    "p": p,
                    "key": str(i + 1) if i < 9 else None,
                    "guess": label in (item["labels"] or [item["top_label"]]),
                }
            )
    return {
        "name": name,
        "queue": q,
        "item": item,
        "choices": choices,
        "multi": multi,
        "stats": review.stats(ws, name),
        "never_low": _never_low(ws, name, q["review_below"]),
    }


def _never_low(ws: Any, name: str, below: float) -> int | None:
    """The number of labels when a single-label model's top confidence (at least 1/labels)
    can never be under ``below``: then no prediction is queued as uncertain (a 2-label
    model at the default 0.5). None otherwise."""
    from autovision.monitoring import review

    versions = _versions(ws, name)
    if not versions:
        return None
    models = review._Models(ws)
    if models.multi_label(versions[0].id):
        return None
    n = len(review._name_labels(ws, name, models))
    return n if n >= 2 and below <= 1 / n else None


def _feedback_target(ws: Any, name: str) -> str | None:
    """The dataset reviewed images go to: that of the name's newest version."""
    versions = _versions(ws, name)
    return versions[0].dataset if versions else None


@router.get("/monitor")
def monitor_index(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    from autovision.monitoring import review
    from autovision.monitoring.history import latest_checks
    from autovision.monitoring.timeline import timeline

    ws = console_state(request).ws
    rows = []
    for name in _names(ws):
        day = timeline(ws, name, since="24h")
        latest = latest_checks(ws, name)
        rows.append(
            {
                "name": name,
                "predictions": day["total"],
                "confidence": day["mean_confidence"],
                "queued": review.queue(ws, name, limit=0)["total"],
                "verdict": latest[0]["verdict"] if latest else None,
            }
        )
    return render(request, "monitor_index.html", rows=rows)


@router.get("/monitor/{name}")
def monitor_page(
    request: Request,
    name: str,
    user: Annotated[User, Depends(require("read"))],
    window: str = "24h",
) -> Response:
    ws = console_state(request).ws
    try:
        _known(ws, name)
    except _NotFound as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    window = window if window in WINDOWS else "24h"
    return render(
        request,
        "monitor.html",
        window=window,
        windows=WINDOWS,
        dataset=_feedback_target(ws, name),
        **_charts(ws, name, window),
        **_drift_context(ws, name),
        **_review_context(ws, name),
    )


@router.get("/monitor/{name}/review/{prediction_id}/image")
def review_image(
    request: Request,
    name: str,
    prediction_id: str,
    user: Annotated[User, Depends(require("read"))],
) -> Response:
    from autovision.data.thumbnails import MEDIA_TYPE, thumbnail
    from autovision.monitoring import review

    ws = console_state(request).ws
    try:
        row = review.get(ws, prediction_id, name=name)
        if not row.image_sha256:
            raise review.PredictionNotFound(f"prediction {prediction_id} has no stored image")
        data = thumbnail(ws, row.image_sha256, IMAGE_SIZE, what=f"prediction {prediction_id}")
    except AutovisionError as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    headers = {"cache-control": "private, max-age=31536000, immutable"}
    return Response(data, media_type=MEDIA_TYPE, headers=headers)


def _review_answer(request: Request, name: str, error: str | None = None) -> Response:
    if not is_htmx(request):
        return RedirectResponse(f"/monitor/{name}#review", status_code=303)
    ws = console_state(request).ws
    context = _review_context(ws, name)
    return render(request, "_review.html", error=error, oob=True, **context)


@router.post("/monitor/{name}/review/{prediction_id}/label")
async def review_label(
    request: Request,
    name: str,
    prediction_id: str,
    user: Annotated[User, Depends(require("review"))],
) -> Response:
    from autovision.monitoring import review

    form = await request.form()
    labels = [str(v) for v in form.getlist("label")]
    try:
        with audit_as(user):
            review.label(console_state(request).ws, prediction_id, labels, name=name)
    except AutovisionError as exc:
        return _review_answer(request, name, error=str(exc))
    return _review_answer(request, name)


@router.post("/monitor/{name}/review/{prediction_id}/skip")
def review_skip(
    request: Request,
    name: str,
    prediction_id: str,
    user: Annotated[User, Depends(require("review"))],
) -> Response:
    from autovision.monitoring import review

    try:
        with audit_as(user):
            review.skip(console_state(request).ws, prediction_id, name=name)
    except AutovisionError as exc:
        return _review_answer(request, name, error=str(exc))
    return _review_answer(request, name)


@router.post("/monitor/{name}/review-below")
def set_review_below(
    request: Request,
    name: str,
    user: Annotated[User, Depends(require("deploy"))],
    value: Annotated[str, Form(max_length=20)],
) -> Response:
    """``autovision models set NAME --review-below VALUE`` from the review queue (admin)."""
    from autovision.monitoring import review

    ws = console_state(request).ws
    try:
        _known(ws, name)
    except _NotFound as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    try:
        number = float(value)
    except ValueError:
        return _review_answer(request, name, error=f"Review below: {value!r} is not a number.")
    try:
        with audit_as(user):
            review.set_review_below(ws, name, number)
    except AutovisionError as exc:
        return _review_answer(request, name, error=str(exc))
    return _review_answer(request, name)


@router.post("/monitor/{name}/drift")
def drift_check(
    request: Request,
    name: str,
    user: Annotated[User, Depends(require("review"))],
    model: Annotated[str, Form(max_length=200)],
    window: Annotated[str, Form(max_length=8)] = "24h",
) -> Response:
    """Run ``autovision monitor`` on one version of ``name`` (its result is stored)."""
    from autovision.monitoring.monitor import monitor

    ws = console_state(request).ws
    error = None
    if model not in {mv.id for mv in _versions(ws, name)}:
        error = f"{model!r} is not a version of {name}."
    else:
        try:
            with audit_as(user):
                monitor(ws, model, since=window if window in WINDOWS else "24h")
        except AutovisionError as exc:
            error = str(exc)
    if not is_htmx(request):
        return RedirectResponse(f"/monitor/{name}#drift", status_code=303)
    return render(request, "_drift.html", name=name, error=error, **_drift_context(ws, name))


@router.post("/monitor/{name}/feedback")
def add_feedback(
    request: Request,
    name: str,
    user: Annotated[User, Depends(require("dataset.edit"))],
    split: Annotated[str, Form(max_length=16)] = "train",
) -> Response:
    """The reviewed images of ``name`` into a new version of its dataset."""
    from autovision.monitoring.feedback import add_feedback as add

    ws = console_state(request).ws
    dataset = _feedback_target(ws, name)
    result, error = None, None
    if dataset is None:
        error = f"{name} has no model version, so no dataset to add reviewed images to."
    else:
        try:
            with audit_as(user):
                result = add(ws, dataset, from_name=name, split=split)
        except AutovisionError as exc:
            error = str(exc)
    if not is_htmx(request):
        return RedirectResponse(f"/monitor/{name}#feedback", status_code=303)
    return render(request, "_feedback.html", name=name, dataset=dataset, result=result, error=error)
