"""Every dataset version at a glance, in two queries: what a form that picks a version shows
(the Train page's dataset choice: reference, images, single- or multi-label)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from autovision.workspace.db import DatasetRow, ItemRow, VersionRow

__all__ = ["list_versions"]


def list_versions(ws: Any) -> list[dict[str, Any]]:
    """``[{"ref", "name", "version", "latest", "images", "multi_label", "task",
    "created_at"}]``: datasets by name, each one's versions newest first. No item is loaded
    (a count per version), so the list stays fast for large datasets."""
    with ws.Session() as s:
        rows = list(
            s.execute(
                select(DatasetRow.name, VersionRow)
                .join(VersionRow, VersionRow.dataset_id == DatasetRow.id)
                .order_by(DatasetRow.name, VersionRow.version.desc())
            )
        )
        images = dict(
            s.execute(select(ItemRow.version_id, func.count()).group_by(ItemRow.version_id)).all()
        )
    out: list[dict[str, Any]] = []
    latest: dict[str, int] = {}
    for name, v in rows:
        latest.setdefault(name, v.version)
        out.append(
            {
                "ref": f"{name}@{v.version}",
                "name": name,
                "version": v.version,
                "latest": v.version == latest[name],
                "images": int(images.get(v.id, 0)),
                "multi_label": bool(v.multi_label),
                "task": "multi-label" if v.multi_label else "single-label",
                "created_at": v.created_at.isoformat() if v.created_at else None,
            }
        )
    return out
