"""``GET /metrics`` in the Prometheus text format (any valid key, when keys exist)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from autovision.serving.deps import StateDep, predict_auth
from autovision.serving.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"], dependencies=[Depends(predict_auth)])


@router.get("/metrics")
async def metrics(state: StateDep) -> PlainTextResponse:
    return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)
