"""The prediction server: FastAPI + ONNX Runtime, Vertex AI / TF Serving and KServe v2
protocols, API keys, limits, metrics and dynamic batching. See :mod:`.app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServerSettings", "create_app"]

if TYPE_CHECKING:
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from autovision.serving.app import create_app

        return create_app
    if name == "ServerSettings":
        from autovision.serving.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module 'autovision.serving' has no attribute {name!r}")
