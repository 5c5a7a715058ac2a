"""The stored results of model-based checks: one row per dataset version and kind.

``save_check(ws, ds, kind, result, params)`` replaces the earlier result of that kind for
that version; ``load_checks(ws, ds)`` returns ``{kind: result}`` for the kinds computed on
this exact content (a row whose content hash no longer matches is ignored). Each ``result``
is plain JSON; its keys are documented by the module that computes it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from autovision.data.dataset import DatasetVersion
from autovision.workspace.db import DatasetCheckRow, utcnow

KINDS = ("label_issues", "outliers", "content_duplicates")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown check kind {kind!r}; one of {', '.join(KINDS)}")


def save_check(
    ws: Any,
    ds: DatasetVersion,
    kind: str,
    result: dict[str, Any],
    params: dict[str, Any] | None = None,
) -> None:
    """Store ``result`` as the latest ``kind`` check of ``ds`` (replacing an earlier one)."""
    _check_kind(kind)
    with ws.Session.begin() as s:
        s.execute(
            delete(DatasetCheckRow).where(
                DatasetCheckRow.dataset == ds.name,
                DatasetCheckRow.version == ds.version,
                DatasetCheckRow.kind == kind,
            )
        )
        s.add(
            DatasetCheckRow(
                dataset=ds.name,
                version=ds.version,
                kind=kind,
                content_hash=ds.content_hash,
                created_at=utcnow(),
                params=dict(params or {}),
                result=result,
            )
        )


def load_checks(ws: Any, ds: DatasetVersion) -> dict[str, dict[str, Any]]:
    """``{kind: result}`` of the checks stored for ``ds`` (each result also gets
    ``"computed_at"`` (ISO time) and ``"params"``)."""
    with ws.Session() as s:
        rows = s.scalars(
            select(DatasetCheckRow).where(
                DatasetCheckRow.dataset == ds.name, DatasetCheckRow.version == ds.version
            )
        ).all()
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.content_hash and r.content_hash != ds.content_hash:
            continue
        out[r.kind] = {
            **(r.result or {}),
            "computed_at": r.created_at.isoformat() if r.created_at else None,
            "params": dict(r.params or {}),
        }
    return out
