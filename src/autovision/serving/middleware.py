"""One pure-ASGI middleware for what every request needs: a request id (response header
and log lines), the ``Host`` check (DNS rebinding) and the ``Origin`` check of
state-changing requests (cross-site requests from a browser), the body size limit (from
``Content-Length`` and while streaming, before the body is read whole), metrics, an access
log line, and the catch-all 500.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autovision.serving.errors import BodyTooLarge, error_body, record_error
from autovision.serving.hosts import HostPolicy, split_host

log = logging.getLogger("autovision.serving")
REQUEST_ID_HEADER = "x-request-id"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# the API key id of the request (set by the auth dependency; None: no key), for the log
key_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("key_id", default=None)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` so a format can use ``%(request_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines with the request id, for ``autovision serve``."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    logger = logging.getLogger("autovision")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hosts: HostPolicy) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.hosts = hosts

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """``(status, code, message)`` when the Host or Origin header is not accepted."""
        raw = _header(scope, b"host")
        host = split_host(raw) if raw is not None else None
        if host is None or not self.hosts.host_allowed(host[0]):
            return (
                421,
                "host_not_allowed",
                "this server does not answer to this Host header; add the name with --allowed-host",
            )
        origin = _header(scope, b"origin")
        if (
            origin is not None
            and scope.get("method") in STATE_CHANGING
            and not self.hosts.origin_allowed(origin, scope.get("scheme", "http"), host)
        ):
            return (
                403,
                "origin_not_allowed",
                "cross-origin requests that change state are refused; add the origin with "
                "--allowed-origin",
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER.encode())
        rid = incoming if incoming and _VALID_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            refused = self.refusal(scope)
            if refused is not None:
                await self._error(scope, send_wrapper, *refused)
                return
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                bad = not length.isdigit()
                await self._error(
                    scope,
                    send_wrapper,
                    400 if bad else 413,
                    "bad_request" if bad else "payload_too_large",
                    "invalid Content-Length"
                    if bad
                    else f"request body is larger than the limit of {limit} bytes",
                )
                return
            await self.app(scope, receive_limited, send_wrapper)
        except BodyTooLarge as exc:  # read outside a route (normally a handler answers it)
            if status["started"]:
                raise
            await self._error(scope, send_wrapper, 413, "payload_too_large", exc.detail)
        except Exception as exc:  # noqa: BLE001 - the catch-all: log it, answer 500
            if status["started"]:
                log.error("error after the response started: %s", type(exc).__name__)
                raise
            log.error("internal error: %s", type(exc).__name__, exc_info=exc)
            await self._error(scope, send_wrapper, 500, "internal", "internal server error")
        finally:
            self._observe(scope, status["code"], time.perf_counter() - start)
            request_id_var.reset(token)

    async def _error(self, scope: Scope, send: Send, status: int, code: str, message: str) -> None:
        record_error(None, status, code, message, scope)
        body = json.dumps(error_body(code, message, scope.get("path", ""))).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, code: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", "unmatched")
        method = scope.get("method", "")
        server: Any = getattr(getattr(scope.get("app"), "state", None), "server", None)
        if server is not None:
            server.metrics.requests.inc(route=template, method=method, code=str(code))
            server.metrics.latency.observe(seconds, route=template)
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        path = raw.decode("latin-1").encode("unicode_escape").decode("ascii")  # one line
        log.info("%s %s %d %.1fms", method, path, code, seconds * 1000)
