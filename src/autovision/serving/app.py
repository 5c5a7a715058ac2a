"""The prediction server app: ``create_app(workspace_or_settings, model_ids) -> FastAPI``.

From a test or a benchmark::

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(ws, ["m-20250101-120000-abc123"], settings=ServerSettings(max_batch_size=16))
    with TestClient(app) as client:            # the lifespan loads the models
        client.post("/v1/models/m-...:predict", json={"instances": [{"content": b64}]})

    # or a real server on loopback:
    uvicorn.run(app, host="127.0.0.1", port=8080)

``source`` is a :class:`~autovision.workspace.Workspace`, a workspace path, or a
:class:`ServerSettings` (whose ``workspace`` and ``model_ids`` are used); no model ids
means every ready model of the workspace. Each package is loaded once (one ONNX Runtime
session) when the app starts. ``create_app_from_env`` builds the app from
``AUTOVISION_SERVE_*`` variables (what uvicorn's ``--workers`` processes use).

With ``admin_port`` the main app has no ``/admin`` routes; a second app
(``app.state.admin_app``, the same :class:`ServerState`) serves them, and the main app's
lifespan runs it on its own uvicorn server (TorchServe's management port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from anyio import to_thread
from fastapi import FastAPI

import autovision
from autovision.serving import errors
from autovision.serving.hosts import HostPolicy
from autovision.serving.middleware import RequestContextMiddleware
from autovision.serving.routers import (
    admin,
    aliases,
    feedback,
    health,
    metrics,
    predict,
    review,
    upload,
    v2,
)
from autovision.serving.settings import ServerSettings
from autovision.serving.state import ServerState

log = logging.getLogger("autovision.serving")


def _workspace(source: Any, settings: ServerSettings) -> Any:
    from autovision.workspace import Workspace

    if isinstance(source, Workspace):
        return source
    if isinstance(source, str | os.PathLike):
        return Workspace(source)
    return Workspace(settings.workspace)


def create_app(
    source: Any = None,
    model_ids: Sequence[str] | None = None,
    *,
    settings: ServerSettings | None = None,
) -> FastAPI:
    """Build the app; models load in its lifespan (``with TestClient(app)``, uvicorn)."""
    if isinstance(source, ServerSettings):
        settings, source = source, None
    settings = settings or ServerSettings()
    if model_ids is not None:
        settings = settings.model_copy(update={"model_ids": list(model_ids)})
    state = ServerState(_workspace(source, settings), settings)
    split = settings.admin_port is not None
    admin_routers = (admin, aliases, review)
    admin_app = _app(state, settings.admin_host or settings.host, admin_routers) if split else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await to_thread.run_sync(state.load)
        try:
            async with _admin_server(admin_app, settings):
                yield
        finally:
            state.close()

    routers = (health, predict, feedback, upload, v2, metrics) + (() if split else admin_routers)
    app = _app(state, settings.host, routers, lifespan)
    app.state.admin_app = admin_app
    return app


def _app(state: ServerState, bind_host: str, routers: Sequence[Any], lifespan: Any = None):
    """A FastAPI app over ``state`` with the error handlers, middleware and ``routers``."""
    settings = state.settings
    app = FastAPI(
        title="autovision prediction server",
        version=autovision.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = state
    errors.install(app)
    hosts = HostPolicy.for_bind(bind_host, settings.allowed_hosts, settings.allowed_origins)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, hosts=hosts
    )
    for module in routers:
        app.include_router(module.router)
    return app


class _AdminServer(uvicorn.Server):
    """The admin port's server: it leaves signals to the main server, whose lifespan
    stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (an OSError saying why, rather than uvicorn's
    ``sys.exit`` inside a task)."""
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return socket.create_server(addr[:2], family=family)


@asynccontextmanager
async def _admin_server(admin_app: FastAPI | None, settings: ServerSettings):
    """Run ``admin_app`` on ``admin_host:admin_port`` while the main app runs; the bound
    port is ``admin_app.state.port``."""
    if admin_app is None:
        yield
        return
    from autovision.serving.settings import admin_uvicorn_kwargs

    kwargs = admin_uvicorn_kwargs(settings)
    sock = _listen(kwargs["host"], kwargs["port"])
    admin_app.state.port = sock.getsockname()[1]
    server = _AdminServer(uvicorn.Config(admin_app, lifespan="off", log_config=None, **kwargs))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # its error, if any
        log.info("admin routes on %s:%d", kwargs["host"], admin_app.state.port)
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()


def create_app_from_env() -> FastAPI:
    """The app from ``AUTOVISION_SERVE_*`` (uvicorn factory for ``--workers N``)."""
    from autovision.serving.middleware import configure_logging

    configure_logging()
    return create_app(ServerSettings())


def serve(settings: ServerSettings, ws: Any = None) -> None:
    """Run uvicorn with ``settings`` (blocking); ``workers > 1`` uses worker processes
    that rebuild the app from ``AUTOVISION_SERVE_*``."""
    from autovision.serving.middleware import configure_logging
    from autovision.serving.settings import uvicorn_kwargs

    configure_logging()
    kwargs = uvicorn_kwargs(settings)
    if settings.workers == 1:
        uvicorn.run(create_app(ws, settings=settings), **kwargs)
        return
    cpus = os.cpu_count() or 1
    share = max(1, cpus // settings.workers)
    settings = settings.model_copy(
        update={
            "ort_threads": settings.ort_threads or share,
            "preprocess_threads": settings.preprocess_threads or share,
        }
    )
    os.environ.update(settings.to_env())
    uvicorn.run("autovision.serving.app:create_app_from_env", factory=True, **kwargs)
