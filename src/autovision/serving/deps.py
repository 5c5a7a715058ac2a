"""Dependencies, each an ``Annotated[..., Depends(...)]``: server state, the caller's key
and role (under the ``auth`` policy), the addressed model, and request bodies parsed only
after authentication and only with a ``Content-Type`` the route accepts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from anyio import to_thread
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, register_url_convertor

from autovision.security.keys import role_allows
from autovision.serving.errors import ApiError, validation_message
from autovision.serving.middleware import key_id_var
from autovision.serving.schemas import (
    CreateKeyRequest,
    PredictRequest,
    RollbackRequest,
    SetAliasRequest,
)
from autovision.serving.state import ServedModel, ServerState

B = TypeVar("B", bound=BaseModel)


class ModelIdConvertor(Convertor[str]):
    """``{model:model_id}``: one path segment without a colon, so that
    ``/v1/models/m1:predict`` never reads as a model named ``m1:predict``."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model_id", ModelIdConvertor())


async def get_state(request: Request) -> ServerState:
    return request.app.state.server


StateDep = Annotated[ServerState, Depends(get_state)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key id and its role (``key_id`` None on an open route)."""

    key_id: str | None
    role: str


ADMIN_DISABLED = (
    "admin routes are disabled until an API key exists: create the first admin key with "
    "`autovision keys create --role admin`"
)


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


def require_role(role: str):
    """Dependency factory under ``settings.auth``: admin routes are 403 ``admin_disabled``
    while no key exists, then need an admin key, whatever the policy; other routes need a
    key when the policy is ``required``, or ``auto`` once any key exists, and none when
    ``off``. 401 without a valid key, 403 with a key whose role does not allow ``role``.
    Keys are checked per request (TTL-cached)."""

    async def dependency(request: Request, state: StateDep) -> Principal:
        keys = state.keys
        policy = state.settings.auth
        enabled = keys.cached_enabled()
        if enabled is None:
            enabled = await to_thread.run_sync(keys.auth_enabled)
        if role == "admin" and not enabled:
            raise ApiError(403, "admin_disabled", ADMIN_DISABLED)
        if role != "admin" and policy == "off":
            return Principal(None, role)
        required = enabled or policy == "required"
        key = presented_key(request)
        if key is not None:
            found = keys.cached_lookup(key)
            if found is None:
                found = await to_thread.run_sync(keys.lookup, key)
            if found is not None:
                key_id, key_role = found
                request.state.key_id = key_id
                key_id_var.set(key_id)
                if not role_allows(key_role, role):
                    raise ApiError(403, "forbidden", f"this key's role cannot call {role} routes")
                return Principal(key_id, key_role)
            if required:
                raise ApiError(
                    401,
                    "invalid_api_key",
                    "unknown or revoked API key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if required:
            raise ApiError(
                401,
                "missing_api_key",
                "an API key is required: 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Principal(None, role)

    return dependency


predict_auth = require_role("predict")
admin_auth = require_role("admin")
PredictAuth = Annotated[Principal, Depends(predict_auth)]
AdminAuth = Annotated[Principal, Depends(admin_auth)]


async def get_model(model: str, state: StateDep, request: Request) -> AsyncIterator[ServedModel]:
    """The addressed model (at the path's ``{version}`` when it has one), held for the
    request: a hot switch retires the old version only once its requests are done."""
    served = state.acquire(model, request.path_params.get("version"))
    try:
        yield served
    finally:
        state.release(served)


async def get_endpoint_model(endpoint: str, state: StateDep) -> AsyncIterator[ServedModel]:
    served = state.acquire(endpoint)
    try:
        yield served
    finally:
        state.release(served)


ModelDep = Annotated[ServedModel, Depends(get_model)]
EndpointModelDep = Annotated[ServedModel, Depends(get_endpoint_model)]


def media_type(request: Request) -> str | None:
    """The ``Content-Type`` without its parameters (``charset=...``), lower case."""
    value = request.headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def require_media(request: Request, *allowed: str, missing_ok: bool = False) -> None:
    """415 ``unsupported_media_type`` unless the body's type is one of ``allowed``. A JSON
    type keeps a web page from posting without a CORS preflight (text/plain, forms)."""
    seen = media_type(request)
    if seen in allowed or (seen is None and missing_ok):
        return
    shown = "no Content-Type" if seen is None else f"Content-Type {seen[:60]!r}"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"{shown} is not accepted here; send {' or '.join(allowed)}",
    )


def json_body(model: type[B]):
    """Dependency factory: the JSON body as ``model``, read after the auth dependency
    (route-level dependencies and earlier parameters resolve first), so an unauthenticated
    caller never gets its body parsed; 415 unless it is sent as ``application/json``."""

    async def dependency(request: Request) -> B:
        require_media(request, "application/json")
        raw = await request.body()
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise ApiError(400, "invalid_request", validation_message(exc.errors())) from None

    return dependency


def optional_json_body(model: type[B]):
    """Like :func:`json_body`, but no body at all gives ``model()`` (its defaults)."""
    parse = json_body(model)

    async def dependency(request: Request) -> B:
        if not has_body(request):
            return model()
        return await parse(request)

    return dependency


PredictBody = Annotated[PredictRequest, Depends(json_body(PredictRequest))]
CreateKeyBody = Annotated[CreateKeyRequest, Depends(json_body(CreateKeyRequest))]
SetAliasBody = Annotated[SetAliasRequest, Depends(json_body(SetAliasRequest))]
RollbackBody = Annotated[RollbackRequest, Depends(optional_json_body(RollbackRequest))]


async def no_body_or_json(request: Request) -> None:
    """For POSTs without a body: none, or a JSON one (never a form or text)."""
    if has_body(request):
        require_media(request, "application/json")
