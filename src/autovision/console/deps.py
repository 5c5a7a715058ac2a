"""What routes depend on: the console state, ``require(action)`` (session, CSRF, role) and
``render(request, "page.html", **ctx)`` (the template with the user, CSRF token and nav)."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from autovision.console.auth import LoginTokens, User, csrf_ok, session_user
from autovision.security.audit import audit_event
from autovision.serving.middleware import STATE_CHANGING

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
COOKIE = "av_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

NAV: list[tuple[str, str]] = [
    ("Datasets", "/datasets"),
    ("Train", "/train"),
    ("Models", "/models"),
    ("Deploy", "/deploy"),
    ("Monitor", "/monitor"),
    ("Label", "/label"),
    ("Usage", "/usage"),
]
"""The navigation bar; an entry whose page is not registered yet is shown greyed out."""


@dataclass
class ConsoleState:
    """Everything the routes share, on ``app.state.console``."""

    ws: Any
    secure: bool = False
    max_upload_bytes: int = 1024 * 1024**2
    login_tokens: LoginTokens = field(default_factory=LoginTokens)
    env: Environment | None = None
    imports: Any = None  # console.imports.ImportJobs
    summaries: Any = None  # console.summaries.SummaryCache
    static_version: str = ""
    pages: set[str] = field(default_factory=set)


def make_env() -> Environment:
    """Jinja2 with autoescaping on for every ``.html`` template (user text is data)."""
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static_version() -> str:
    """A short hash of the static files: their URLs change when they do (cache busting)."""
    h = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:10]


def console_state(request: Request) -> ConsoleState:
    return request.app.state.console


class LoginRequired(Exception):
    """No valid session: a page redirects to /login, htmx and scripts get 401."""


class Refused(Exception):
    """403 with a reason shown to the user (a role without the action, a bad CSRF token)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def sent_csrf(request: Request) -> str | None:
    """The CSRF token of a request: the header (htmx, scripts) or the form field."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is not None:
        return sent
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # FastAPI has parsed it already: cached on the request
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def current_user(request: Request) -> User | None:
    """The session's user, or None; also kept on ``request.state.user`` for ``render``."""
    user = getattr(request.state, "user", None)
    if user is None:
        user = session_user(console_state(request).ws, request.cookies.get(COOKIE))
        request.state.user = user
    return user


def require(action: str) -> Callable[[Request], Awaitable[User]]:
    """A dependency: the logged-in user allowed ``action`` (see ``auth.ACTIONS``); on a
    state-changing method the session's CSRF token must come with the request.

    ``user: Annotated[User, Depends(require("dataset.import"))]``.
    """

    async def dependency(request: Request) -> User:
        user = current_user(request)
        if user is None:
            raise LoginRequired
        ws = console_state(request).ws
        if request.method in STATE_CHANGING and not csrf_ok(user, await sent_csrf(request)):
            audit_event(
                ws,
                "console.refused",
                "refused",
                user=user.name,
                role=user.role,
                reason="csrf",
                path=request.url.path,
            )
            raise Refused("The form was stale or did not come from this console: reload it.")
        if not user.can(action):
            audit_event(
                ws,
                "console.refused",
                "refused",
                user=user.name,
                role=user.role,
                reason="role",
                needs=action,
                path=request.url.path,
            )
            raise Refused(f"Your role ({user.role}) may not do this ({action}).")
        return user

    dependency.__name__ = f"require_{action.replace('.', '_')}"
    return dependency


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``user``, ``csrf``, ``nav`` and ``static(name)`` added."""
    st = console_state(request)
    user = getattr(request.state, "user", None)
    path = request.url.path
    nav = [
        {
            "label": label,
            "href": href,
            "active": path == href or path.startswith(href + "/"),
            "ready": href in st.pages,
        }
        for label, href in NAV
    ]
    ctx = {
        "request": request,
        "user": user,
        "csrf": user.csrf if user is not None else "",
        "csrf_field": CSRF_FIELD,
        "nav": nav,
        "static": lambda name: f"/static/{name}?v={st.static_version}",
        **context,
    }
    assert st.env is not None
    html = st.env.get_template(template).render(ctx)
    return HTMLResponse(html, status_code=status_code)
