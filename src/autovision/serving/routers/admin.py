"""Admin routes (admin role): served models, API keys. Every call is audited. They are
disabled while no key exists (the first admin key comes from the CLI), and are served on
their own port instead of the main one with ``--admin-port``."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Request

from autovision.security import keys as K
from autovision.serving.deps import (
    AdminAuth,
    CreateKeyBody,
    Principal,
    StateDep,
    no_body_or_json,
)
from autovision.serving.errors import ApiError
from autovision.serving.schemas import CreatedKey, CreateKeyRequest, KeyInfo, request_body
from autovision.serving.state import ServerState

router = APIRouter(prefix="/admin", tags=["admin"])


def _audit(
    state: ServerState, request: Request, who: Principal, action: str, **details: Any
) -> None:
    client = request.client
    state.audit.write(
        "admin",
        action=action,
        request_id=request.scope.get("state", {}).get("request_id"),
        client=f"{client.host}:{client.port}" if client else None,
        route=request.url.path,
        key_id=who.key_id,
        **details,
    )


@router.get("/models")
async def list_models(who: AdminAuth, state: StateDep, request: Request) -> Any:
    _audit(state, request, who, "models.list")
    return {"models": [m.info() for m in state.models.values()]}


@router.get("/keys", response_model=list[KeyInfo])
async def list_keys(who: AdminAuth, state: StateDep, request: Request) -> Any:
    _audit(state, request, who, "keys.list")
    return await to_thread.run_sync(K.list_keys, state.ws)


@router.post(
    "/keys",
    response_model=CreatedKey,
    status_code=201,
    openapi_extra=request_body(CreateKeyRequest),
)
async def create_key(who: AdminAuth, body: CreateKeyBody, state: StateDep, request: Request) -> Any:
    key_id, key = await to_thread.run_sync(K.create_key, state.ws, body.role)
    state.keys.clear()
    _audit(state, request, who, "keys.create", target=key_id, role=body.role)
    return {"id": key_id, "role": body.role, "key": key}


@router.delete("/keys/{key_id}")
async def revoke_key(who: AdminAuth, state: StateDep, request: Request, key_id: str) -> Any:
    try:
        await to_thread.run_sync(K.revoke, state.ws, key_id)
    except K.ApiKeyError:
        raise ApiError(404, "key_not_found", "no API key with this id") from None
    state.keys.clear()
    _audit(state, request, who, "keys.revoke", target=key_id)
    return {"id": key_id, "revoked": True}


@router.post("/keys/reload")
async def reload_keys(
    who: AdminAuth, _: Annotated[None, Depends(no_body_or_json)], state: StateDep, request: Request
) -> Any:
    """Forget cached key checks now (they expire by themselves within the TTL)."""
    state.keys.clear()
    _audit(state, request, who, "keys.reload")
    return {"reloaded": True}
