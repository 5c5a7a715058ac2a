"""Admin routes over named models' aliases (admin role, like every ``/admin`` route):
list, move, roll back, history. Each change runs inside ``acting_as(key_id=...)``, so the
history's actor is the API key id and the audit log has the line (``alias.set`` ...).
``{alias:model_id}`` stops at a colon, so ``:rollback`` is never part of an alias."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import APIRouter, Request

from autovision.errors import ModelError
from autovision.security.audit import acting_as
from autovision.serving.deps import AdminAuth, Principal, RollbackBody, SetAliasBody, StateDep
from autovision.serving.errors import ApiError
from autovision.serving.routers.admin import _audit
from autovision.serving.schemas import RollbackRequest, SetAliasRequest, request_body
from autovision.serving.state import ServerState
from autovision.versions import store
from autovision.versions.refs import check_alias

router = APIRouter(prefix="/admin/models", tags=["admin"])

T = TypeVar("T")


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _need_name(ws: Any, name: str) -> None:
    if name not in store.names(ws):
        raise ApiError(404, "model_name_not_found", f"no model named {_shown(name)!r}")


async def _run(request: Request, who: Principal, fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, attributed to the caller's key (audit, history)."""
    client = request.client
    where = f"{client.host}:{client.port}" if client else None
    request_id = request.scope.get("state", {}).get("request_id")

    def work() -> T:
        with acting_as(key_id=who.key_id, client=where, request_id=request_id):
            return fn()

    return await to_thread.run_sync(work)


def _moved(state: ServerState) -> None:
    """The server's own watcher looks at once (other servers within their poll)."""
    if state.watcher is not None:
        state.watcher.poke()


@router.get("/{name:model_id}/aliases")
async def list_aliases(who: AdminAuth, state: StateDep, request: Request, name: str) -> Any:
    def work() -> dict[str, int]:
        _need_name(state.ws, name)
        return store.aliases(state.ws, name)

    found = await _run(request, who, work)
    _audit(state, request, who, "aliases.list", name=name)
    return {"name": name, "aliases": found}


@router.put(
    "/{name:model_id}/aliases/{alias:model_id}",
    openapi_extra=request_body(SetAliasRequest),
)
async def set_alias(
    who: AdminAuth, body: SetAliasBody, state: StateDep, request: Request, name: str, alias: str
) -> Any:
    """Point ``alias`` at ``version``: 404 unknown name or version, 400 invalid alias, 409
    when it names that version already."""

    def work() -> dict[str, Any]:
        _need_name(state.ws, name)
        try:
            check_alias(alias)
        except ModelError as exc:
            raise ApiError(400, "invalid_alias", str(exc)) from None
        versions = [v.version for v in store.list_versions(state.ws, name)]
        if body.version not in versions:
            raise ApiError(
                404,
                "model_version_not_found",
                f"model {name!r} has no version {body.version} "
                f"(versions: {', '.join(map(str, versions))})",
            )
        try:
            event = store.set_alias(state.ws, name, body.version, alias, reason=body.reason)
        except ModelError as exc:
            raise ApiError(409, "alias_unchanged", str(exc)) from None
        return event.to_dict()

    event = await _run(request, who, work)
    _moved(state)
    return {"event": event}


@router.post(
    "/{name:model_id}/aliases/{alias:model_id}:rollback",
    openapi_extra=request_body(RollbackRequest, required=False),
)
async def rollback(
    who: AdminAuth, body: RollbackBody, state: StateDep, request: Request, name: str, alias: str
) -> Any:
    """Move ``alias`` back to the version it named before its last move: 404 unknown name
    or alias, 409 when nothing is left to go back to."""

    def work() -> dict[str, Any]:
        _need_name(state.ws, name)
        known = alias in store.aliases(state.ws, name)  # a deleted one is in its history
        if not known and not (_valid(alias) and store.history(state.ws, name, alias)):
            raise ApiError(404, "alias_not_found", f"model {name!r} has no alias {_shown(alias)!r}")
        try:
            event = store.rollback(state.ws, name, alias, reason=body.reason)
        except ModelError as exc:
            raise ApiError(409, "nothing_to_roll_back", str(exc)) from None
        return event.to_dict()

    event = await _run(request, who, work)
    _moved(state)
    return {"event": event}


@router.get("/{name:model_id}/history")
async def history(
    who: AdminAuth, state: StateDep, request: Request, name: str, alias: str | None = None
) -> Any:
    """Every alias move of ``name`` (or of one ``alias``), oldest first."""

    def work() -> list[dict[str, Any]]:
        _need_name(state.ws, name)
        return [e.to_dict() for e in store.history(state.ws, name, alias)]

    events = await _run(request, who, work)
    _audit(state, request, who, "aliases.history", name=name)
    return {"name": name, "events": events}


def _valid(alias: str) -> bool:
    try:
        check_alias(alias)
    except ModelError:
        return False
    return True
