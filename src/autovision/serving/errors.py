"""JSON error bodies ``{"error": {"code", "message"}}`` and the exception handlers.

Under ``/v2`` the KServe protocol's own form is used, ``{"error": "CODE: message",
"code": CODE}``: tritonclient reads ``error`` as a string (and fails on an object); an
inference request's ``id`` (kept in ``scope["state"]["infer_id"]``) is echoed as ``"id"``.
Messages are written for the caller: never a path, a stack trace or an exception repr.
Refused requests (401, 403, 413, 421, 429, 503) are written to the audit log here, in the
one place every error response goes through.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from autovision.data import problems as P
from autovision.errors import ImageDecodeError

log = logging.getLogger("autovision.serving")

AUDITED = frozenset({401, 403, 413, 421, 429, 503})
_DECODE_STATUS = {P.UNSUPPORTED_FORMAT: 415, P.DECODE_BUDGET_EXCEEDED: 413}
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    421: "host_not_allowed",
}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in, once it passes the limit (an HTTPException so
    that FastAPI's body parsing lets it through unchanged)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


def decode_error(exc: ImageDecodeError, index: int | None = None) -> ApiError:
    where = f"instance {index}: " if index is not None else ""
    return ApiError(_DECODE_STATUS.get(exc.reason, 400), exc.reason, where + exc.message)


def error_body(
    code: str, message: str, path: str = "", infer_id: str | None = None
) -> dict[str, Any]:
    if path == "/v2" or path.startswith("/v2/"):
        body: dict[str, Any] = {"error": f"{code}: {message}", "code": code}
        if infer_id is not None:
            body["id"] = infer_id
        return body
    return {"error": {"code": code, "message": message}}


def record_error(
    request: Request | None, status: int, code: str, message: str, scope: dict | None = None
) -> None:
    """Count the error and audit refused requests; used by handlers and the middleware."""
    scope = scope if scope is not None else (request.scope if request is not None else {})
    app = scope.get("app")
    server = getattr(getattr(app, "state", None), "server", None)
    state = scope.setdefault("state", {})
    state["error_code"] = code
    if server is None:
        return
    server.metrics.errors.inc(code=code)
    if status in AUDITED:
        client = scope.get("client")
        try:
            server.refusals.refused(
                client[0] if client else None,
                status=status,
                code=code,
                reason=message,
                request_id=state.get("request_id"),
                client=f"{client[0]}:{client[1]}" if client else None,
                method=scope.get("method"),
                route=scope.get("path"),
                key_id=state.get("key_id"),
            )
        except OSError as exc:  # the request is refused either way
            log.error("cannot write the audit log: %s", exc.strerror or type(exc).__name__)


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    record_error(request, status, code, message)
    infer_id = request.scope.get("state", {}).get("infer_id")
    body = error_body(code, message, request.scope.get("path", ""), infer_id)
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(request, exc.status, exc.code, exc.message, exc.headers)


async def _decode_error(request: Request, exc: ImageDecodeError) -> JSONResponse:
    err = decode_error(exc)
    return error_response(request, err.status, err.code, err.message)


def validation_message(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else []
    return error_response(request, 400, "invalid_request", validation_message(list(errors)))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(request, exc.status_code, code, message, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    return error_response(request, 500, "internal", "internal server error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageDecodeError, _decode_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
