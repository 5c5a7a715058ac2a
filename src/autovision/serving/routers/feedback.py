"""``POST /v1/feedback``: a prediction key says which labels were right for one image of its
own earlier request (a mobile app's "this is wrong" button); it enters the review queue as
a suggestion a reviewer confirms. 403 for a request another key made (an admin key may send
it for any); with auth off, callers have no key and only predictions logged without a key
take feedback."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from autovision.monitoring import review as R
from autovision.serving.deps import FeedbackBody, PredictAuth, StateDep
from autovision.serving.routers.review import call
from autovision.serving.schemas import FeedbackRequest, request_body

router = APIRouter(tags=["predict"])


@router.post("/v1/feedback", openapi_extra=request_body(FeedbackRequest))
async def feedback(who: PredictAuth, body: FeedbackBody, state: StateDep, request: Request) -> Any:
    return await call(
        request,
        who,
        R.add_client_feedback,
        state.ws,
        body.request_id,
        body.labels,
        instance=body.instance,
        key_id=who.key_id,
        admin=who.role == "admin",
    )
