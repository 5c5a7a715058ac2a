"""Workspace settings, from arguments or ``AUTOVISION_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

ENV_WORKSPACE = "AUTOVISION_WORKSPACE"
ENV_DB_URL = "AUTOVISION_DB_URL"
ENV_BLOB_URL = "AUTOVISION_BLOB_URL"
DEFAULT_WORKSPACE = Path("~/.autovision")


def workspace_path(path: str | os.PathLike[str] | None = None) -> Path:
    """``--workspace`` wins, then ``AUTOVISION_WORKSPACE``, then ``~/.autovision``."""
    raw = path or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
    return Path(raw).expanduser().resolve()


def db_url(root: Path, url: str | None = None) -> str:
    """Any SQLAlchemy URL (``postgresql+psycopg://...``); SQLite in the workspace by default."""
    return url or os.environ.get(ENV_DB_URL) or f"sqlite:///{root / 'autovision.db'}"


def blob_url(root: Path, url: str | None = None) -> str:
    """Any fsspec URL (``s3://bucket/prefix``); ``ROOT/blobs`` by default."""
    return url or os.environ.get(ENV_BLOB_URL) or str(root / "blobs")
