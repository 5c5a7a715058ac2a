"""autovision: self-hosted AutoML for image classification.

``import autovision`` stays light; heavy libraries (torch, onnxruntime, fastapi) are
imported where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autovision.errors import (
    AutovisionError,
    DatasetError,
    ImageDecodeError,
    ModelError,
    WorkspaceError,
)

__version__ = "0.1.0"

__all__ = [
    "AutovisionError",
    "Client",
    "DatasetError",
    "ImageDecodeError",
    "ModelError",
    "Workspace",
    "WorkspaceError",
    "__version__",
]

if TYPE_CHECKING:
    from autovision.client import Client
    from autovision.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from autovision.workspace import Workspace

        return Workspace
    if name == "Client":
        from autovision.client import Client

        return Client
    raise AttributeError(f"module 'autovision' has no attribute {name!r}")
