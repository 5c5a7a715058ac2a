"""The Label page: a dataset's unlabeled images one at a time, pre-labelled by its
production model and most uncertain first (:mod:`autovision.data.labeling`). Answers go to
a shared draft (each swaps in the next image); "Save as new version" makes one version
with them. Same keys as the review queue: 1-9 pick a label, Enter confirms the guess, S
skips."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from autovision.console.auth import User, audit_as
from autovision.console.deps import console_state, is_htmx, render, require
from autovision.errors import AutovisionError

router = APIRouter()
IMAGE_SIZE = 384


def _queue_context(ws: Any, dataset: str, **extra: Any) -> dict[str, Any]:
    from autovision.data import labeling

    q = labeling.label_queue(ws, dataset, limit=1)
    item = q["items"][0] if q["items"] else None
    guess = set(item["guess"]) if item else set()
    choices = [
        {
            "label": label,
            "key": str(i + 1) if i < 9 else None,
            "guess": label in guess,
            "p": (item or {}).get("scores", {}).get(label),
        }
        for i, label in enumerate(q["labels"])
    ]
    return {"dataset": dataset, "q": q, "item": item, "choices": choices, **extra}


def _page_or_fragment(request: Request, dataset: str, **extra: Any) -> Response:
    if not is_htmx(request):
        return RedirectResponse(f"/label/{dataset}", status_code=303)
    ws = console_state(request).ws
    return render(request, "_label_queue.html", **_queue_context(ws, dataset, **extra))


@router.get("/label")
def label_index(request: Request, user: Annotated[User, Depends(require("read"))]) -> Response:
    from autovision.data import labeling

    ws = console_state(request).ws
    rows = []
    for name in ws.dataset_names():
        q = labeling.label_queue(ws, name, limit=0, use_model=False)
        mv = labeling.prelabel_model(ws, name)
        rows.append({**q, "model": mv.ref if mv else None})
    return render(request, "label_index.html", rows=rows)


@router.get("/label/{dataset}")
def label_page(
    request: Request, dataset: str, user: Annotated[User, Depends(require("read"))]
) -> Response:
    ws = console_state(request).ws
    try:
        ctx = _queue_context(ws, dataset)
    except AutovisionError as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    return render(request, "label.html", **ctx)


@router.get("/label/{dataset}/{version}/items/{item_id}/image")
def item_image(
    request: Request,
    dataset: str,
    version: int,
    item_id: int,
    user: Annotated[User, Depends(require("read"))],
) -> Response:
    from autovision.data.gallery import item_thumbnail
    from autovision.data.thumbnails import MEDIA_TYPE

    ws = console_state(request).ws
    try:
        data = item_thumbnail(ws, f"{dataset}@{version}", item_id, IMAGE_SIZE)
    except AutovisionError as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    headers = {"cache-control": "private, max-age=31536000, immutable"}
    return Response(data, media_type=MEDIA_TYPE, headers=headers)


@router.post("/label/{dataset}/items/{item_id}")
async def answer(
    request: Request,
    dataset: str,
    item_id: int,
    user: Annotated[User, Depends(require("label"))],
) -> Response:
    """Keep the labels of one image in the draft: the chosen ``label`` values and a typed
    ``new_label``."""
    from autovision.data import labeling

    form = await request.form()
    labels = [str(v) for v in form.getlist("label")]
    typed = str(form.get("new_label") or "").strip()
    if typed:
        labels.append(typed)
    try:
        with audit_as(user):
            labeling.draft_label(console_state(request).ws, dataset, item_id, labels)
    except AutovisionError as exc:
        return _page_or_fragment(request, dataset, error=str(exc))
    return _page_or_fragment(request, dataset)


@router.post("/label/{dataset}/items/{item_id}/skip")
def skip(
    request: Request, dataset: str, item_id: int, user: Annotated[User, Depends(require("label"))]
) -> Response:
    from autovision.data import labeling

    try:
        with audit_as(user):
            labeling.draft_skip(console_state(request).ws, dataset, item_id)
    except AutovisionError as exc:
        return _page_or_fragment(request, dataset, error=str(exc))
    return _page_or_fragment(request, dataset)


@router.post("/label/{dataset}/save")
def save(
    request: Request, dataset: str, user: Annotated[User, Depends(require("label"))]
) -> Response:
    """The draft's labels as one new version of the dataset."""
    from autovision.data import labeling

    try:
        with audit_as(user):
            saved = labeling.save_draft(console_state(request).ws, dataset)
    except AutovisionError as exc:
        return _page_or_fragment(request, dataset, error=str(exc))
    return _page_or_fragment(request, dataset, saved=saved)


@router.post("/label/{dataset}/discard")
def discard(
    request: Request, dataset: str, user: Annotated[User, Depends(require("label"))]
) -> Response:
    from autovision.data import labeling
    from autovision.security.audit import audit_event

    ws = console_state(request).ws
    with audit_as(user):
        n = labeling.discard_draft(ws, dataset)
        audit_event(ws, "dataset.label_draft_discard", target=dataset, answers=n)
    return _page_or_fragment(request, dataset, discarded=n)
