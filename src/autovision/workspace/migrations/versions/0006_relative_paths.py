"""No absolute paths in the database: ``models.path`` of a package inside the workspace
becomes relative to its root (``models/<id>``), and so does ``info.test_metrics.metrics_path``
(its ``metrics.json``), so a copied or moved workspace finds its packages. A path naming
another workspace's ``models/<id>`` (a copy made before this revision) is rewritten too when
this workspace holds that package. Packages registered from outside the workspace keep their
absolute path.

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

_models = sa.table(
    "models", sa.column("id", sa.String), sa.column("path", sa.Text), sa.column("info", sa.JSON)
)


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
    """``change(model_id, path)`` applied to each model's package and metrics paths."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(_models.c.id, _models.c.path, _models.c.info)).all()
    for model_id, path, info in rows:
        values = {}
        if (new := change(model_id, path or "")) != path:
            values["path"] = new
        metrics = (info or {}).get("test_metrics") if isinstance(info, dict) else None
        old = metrics.get("metrics_path") if isinstance(metrics, dict) else None
        if isinstance(old, str):
            folder, name = os.path.split(old)
            moved = f"{change(model_id, folder)}/{name}" if folder else old
            if moved != old:
                values["info"] = {**info, "test_metrics": {**metrics, "metrics_path": moved}}
        if values:
            bind.execute(_models.update().where(_models.c.id == model_id).values(**values))


def upgrade() -> None:
    root = _root()
    if root is not None:  # always set by autovision.workspace.schema
        _rewrite(lambda model_id, path: _relative(root, model_id, path))


def downgrade() -> None:
    root = _root()
    if root is not None:
        _rewrite(lambda _id, path: path if not path or os.path.isabs(path) else str(root / path))
