"""No absolute paths in the database: ``models.path`` of a package inside the workspace
becomes relative to its root (``models/<id>``), so a copied or moved workspace finds its
packages. A path that names another workspace's ``models/<id>`` (a copy made before this
revision) is rewritten too when this workspace holds that package. Packages registered from
outside the workspace keep their absolute path.

Revision ID: 0006_relative_paths
Revises: 0005_console_jobs
Create Date: 2026-12-02
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import sqlalchemy as sa
from alembic import context, op

revision = "0006_relative_paths"
down_revision = "0005_console_jobs"
branch_labels = None
depends_on = None

_models = sa.table("models", sa.column("id", sa.String), sa.column("path", sa.Text))


def _root() -> Path | None:
    root = context.config.attributes.get("workspace_root")
    return Path(root) if root else None


def _relative(root: Path, model_id: str, path: str) -> str:
    p = PurePath(path)
    if not p.is_absolute():
        return path
    for base in {root, root.resolve()}:
        for candidate in {Path(os.path.abspath(p)), Path(p)}:
            if candidate.is_relative_to(base):
                return candidate.relative_to(base).as_posix()
    if p.parts[-2:] == ("models", model_id) and (root / "models" / model_id).is_dir():
        return f"models/{model_id}"
    return path


def _rewrite(change) -> None:
    bind = op.get_bind()
    for model_id, path in bind.execute(sa.select(_models.c.id, _models.c.path)).all():
        new = change(model_id, path or "")
        if new != path:
            bind.execute(_models.update().where(_models.c.id == model_id).values(path=new))


def upgrade() -> None:
    root = _root()
    if root is not None:  # always set by autovision.workspace.schema
        _rewrite(lambda model_id, path: _relative(root, model_id, path))


def downgrade() -> None:
    root = _root()
    if root is not None:
        _rewrite(lambda _id, path: path if os.path.isabs(path) else str(root / path))
