"""The review queue over HTTP (``reviewer`` or ``admin`` keys; off until a key exists, like
``/admin``, and on the admin port with ``--admin-port``): the queue, each item's image,
labels. Client feedback is ``routers/feedback.py``."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response

from autovision.monitoring import review as R
from autovision.security.audit import acting_as
from autovision.serving.deps import Principal, ReviewerAuth, ReviewLabelBody, StateDep
from autovision.serving.errors import ApiError
from autovision.serving.routers.admin import _audit
from autovision.serving.schemas import ReviewLabelRequest, request_body

router = APIRouter(tags=["review"])

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)


def _media(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    return "application/octet-stream"


async def call(request: Request, who: Principal, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn`` in a worker thread, attributed to the caller's key; review errors as HTTP."""
    client = request.client

    def work() -> Any:
        with acting_as(
            key_id=who.key_id,
            client=f"{client.host}:{client.port}" if client else None,
            request_id=request.scope.get("state", {}).get("request_id"),
        ):
            return fn(*args, **kwargs)

    try:
        return await to_thread.run_sync(work)
    except R.PredictionNotFound as exc:
        raise ApiError(404, "prediction_not_found", str(exc)[:200]) from None
    except R.NotYourPrediction as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except R.ReviewError as exc:
        raise ApiError(400, "invalid_request", str(exc)[:500]) from None


@router.get("/admin/review/{name:model_id}")
async def review_queue(
    who: ReviewerAuth,
    state: StateDep,
    request: Request,
    name: str,
    limit: int = Query(50, ge=1, le=1000),
) -> Any:
    out = await call(request, who, R.queue, state.ws, name, limit=limit)
    _audit(state, request, who, "review.list", target=name)
    return out


@router.get("/admin/review/{name:model_id}/{prediction_id}/image")
async def review_image(
    who: ReviewerAuth, state: StateDep, request: Request, name: str, prediction_id: str
) -> Any:
    row = await call(request, who, R.get, state.ws, prediction_id, name=name)
    if not row.image_sha256:
        raise ApiError(404, "image_not_stored", "this prediction's image was not stored")
    try:
        data = await to_thread.run_sync(state.ws.blobs.get, row.image_sha256)
    except (OSError, KeyError):
        raise ApiError(404, "image_not_stored", "this prediction's image is gone") from None
    return Response(data, media_type=_media(data), headers={"Cache-Control": "no-store"})


@router.post(
    "/admin/review/{name:model_id}/{prediction_id}",
    openapi_extra=request_body(ReviewLabelRequest),
)
async def review_label(
    who: ReviewerAuth,
    body: ReviewLabelBody,
    state: StateDep,
    request: Request,
    name: str,
    prediction_id: str,
) -> Any:
    out = await call(request, who, R.label, state.ws, prediction_id, body.labels, name=name)
    _audit(state, request, who, "review.label", target=prediction_id, labels=body.labels)
    return out
