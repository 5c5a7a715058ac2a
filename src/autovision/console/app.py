"""``create_app(ws)``: the console's FastAPI app, in a few lines: state, guard middleware,
error pages, static files, and one router per page group (``routes.ROUTERS``)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from autovision.console.deps import (
    STATIC,
    ConsoleState,
    LoginRequired,
    Refused,
    current_user,
    is_htmx,
    make_env,
    render,
    static_version,
)
from autovision.console.security import ConsoleGuard
from autovision.serving.hosts import HostPolicy


class _Static(StaticFiles):
    """Static files with a year's cache lifetime: their URLs carry the files' hash."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


def create_app(
    ws: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    allowed_hosts: tuple[str, ...] | list[str] = (),
    secure: bool = False,
    max_upload_mb: float = 1024.0,
) -> FastAPI:
    """The console over workspace ``ws``, answering to ``host`` (and ``allowed_hosts``);
    ``secure``: served over TLS (Secure cookies, HSTS). ``port`` is informational (the
    Host check accepts any port of an allowed name)."""
    from autovision.console.auth import purge_sessions
    from autovision.console.imports import ImportJobs
    from autovision.console.routes import ROUTERS
    from autovision.console.summaries import SummaryCache

    summaries = SummaryCache(ws)
    state = ConsoleState(
        ws=ws,
        secure=secure,
        max_upload_bytes=int(max_upload_mb * 1e6),
        env=make_env(),
        imports=ImportJobs(ws, summaries),
        summaries=summaries,
        static_version=static_version(),
    )
    purge_sessions(ws)
    app = FastAPI(
        title="autovision console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan,
    )
    app.state.console = state
    app.state.port = port
    for module_name in ROUTERS:
        module = importlib.import_module(f"autovision.console.routes.{module_name}")
        app.include_router(module.router)
        state.pages.update(getattr(r, "path", "") for r in module.router.routes)
    app.mount("/static", _Static(directory=STATIC), name="static")
    _error_pages(app)
    app.add_middleware(
        ConsoleGuard,
        hosts=HostPolicy.for_bind(host, list(allowed_hosts)),
        max_body_bytes=state.max_upload_bytes,
        secure=secure,
    )
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At start: resume the training jobs a restart interrupted (``console.recovery``)."""
    from starlette.concurrency import run_in_threadpool

    from autovision.console.recovery import recover_at_start

    await run_in_threadpool(recover_at_start, app.state.console.ws)
    yield


def _error_pages(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        where = f"/login?next={quote(target, safe='')}" if target not in ("/", "") else "/login"
        if request.method == "GET" and not is_htmx(request):
            return RedirectResponse(where, status_code=303)
        return PlainTextResponse(
            "Log in first.", status_code=401, headers={"HX-Redirect": "/login"}
        )

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return _error(request, 403, "Not allowed", exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Upload too large"}
        return _error(
            request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        return _error(request, 422, "Incomplete form", f"Missing or invalid: {', '.join(fields)}.")


def _error(request: Request, status: int, title: str, message: str) -> Response:
    current_user(request)  # the error page shows the nav of a logged-in user
    if is_htmx(request):
        return render(request, "_error.html", status_code=status, title=title, message=message)
    return render(request, "error.html", status_code=status, title=title, message=message)
