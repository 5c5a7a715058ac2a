"""Health checks, open without a key: ``/healthz``, ``/v2/health/live``, ``/v2/health/ready``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from autovision.serving.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
@router.get("/v2/health/live")
async def live() -> Any:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(state: StateDep) -> Any:
    """200 once loaded with at least one model and every model asked for by id; 503
    before that, while shutting down, with nothing to serve, or when one failed to load."""
    ok = state.is_ready()
    body = {"ready": ok, "models": len(state.models), "failed": len(state.failed)}
    return JSONResponse(body, status_code=200 if ok else 503)
