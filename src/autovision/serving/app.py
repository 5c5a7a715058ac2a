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
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI

import autovision
from autovision.serving import errors
from autovision.serving.middleware import RequestContextMiddleware
from autovision.serving.routers import admin, health, metrics, predict, upload, v2
from autovision.serving.settings import ServerSettings
from autovision.serving.state import ServerState


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await to_thread.run_sync(state.load)
        try:
            yield
        finally:
            state.close()

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
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    for module in (health, predict, upload, v2, metrics, admin):
        app.include_router(module.router)
    return app


def create_app_from_env() -> FastAPI:
    """The app from ``AUTOVISION_SERVE_*`` (uvicorn factory for ``--workers N``)."""
    from autovision.serving.middleware import configure_logging

    configure_logging()
    return create_app(ServerSettings())


def serve(settings: ServerSettings, ws: Any = None) -> None:
    """Run uvicorn with ``settings`` (blocking); ``workers > 1`` uses worker processes
    that rebuild the app from ``AUTOVISION_SERVE_*``."""
    import uvicorn

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
