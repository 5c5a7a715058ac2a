"""What every console response and request goes through, in one pure-ASGI middleware:
the ``Host`` check (421: DNS rebinding), the ``Origin``/``Referer`` check of state-changing
requests (403: cross-site requests), the upload size limit (413, from ``Content-Length``
and while streaming), and the security headers. There is no CORS at all: no
``Access-Control-Allow-*`` header is ever sent, so other origins cannot read a response.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autovision.serving.hosts import HostPolicy, normal_origin, split_host
from autovision.serving.middleware import STATE_CHANGING

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body streams in past the limit; an HTTPException so FastAPI's body
    parsing lets it through (the app's handler then answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class ConsoleGuard:
    """``ConsoleGuard(app, hosts=HostPolicy.for_bind(...), max_body_bytes=...)``."""

    def __init__(
        self, app: ASGIApp, *, hosts: HostPolicy, max_body_bytes: int, secure: bool = False
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body_bytes = max_body_bytes
        self.headers = list(SECURITY_HEADERS)
        if secure:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        raw = _header(scope, b"host")
        host = split_host(raw) if raw is not None else None
        if host is None or not self.hosts.host_allowed(host[0]):
            return 421, (
                "This console does not answer to this Host header. Start it with "
                "--allowed-host NAME to add a name."
            )
        if scope.get("method") not in STATE_CHANGING:
            return None
        scheme = scope.get("scheme", "http")
        origin = _header(scope, b"origin")
        if origin is None:
            # no Origin (older browsers, some same-origin form posts): the Referer's origin
            referer = _header(scope, b"referer")
            origin = normal_origin(_origin_of(referer)) if referer else None
            if referer and origin is None:
                return 403, "Cross-origin requests that change state are refused."
        if origin is not None and not self.hosts.origin_allowed(origin, scheme, host):
            return 403, "Cross-origin requests that change state are refused."
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k for k, _ in self.headers}
                kept = [
                    h
                    for h in message.get("headers", [])
                    if h[0].lower() not in names and not h[0].lower().startswith(b"access-control")
                ]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        refused = self.refusal(scope)
        if refused is not None:
            await self._plain(send_headers, *refused)
            return
        limit = self.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                await self._plain(send_headers, 400, "Invalid Content-Length.")
            else:
                await self._plain(send_headers, 413, _too_large(limit))
            return
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
            await self.app(scope, receive_limited, send_headers)
        except BodyTooLarge:
            if started:
                raise
            await self._plain(send_headers, 413, _too_large(limit))

    @staticmethod
    async def _plain(send: Send, status: int, text: str) -> None:
        body = text.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return f"The upload is larger than the console's limit of {limit / 1e6:.0f} MB."


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (the path dropped), for the Referer check."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return ""
    return f"{scheme}://{rest.split('/', 1)[0]}"
