"""Reviewed predictions into a dataset: ``add_feedback`` makes a new immutable version with
the labeled images of the prediction log added (deduplicated by content hash), each with
its lineage in ``metadata``; existing items keep their ids and splits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from autovision.data import duplicates, quality
from autovision.data.dataset import SPLITS, Item
from autovision.data.decode import decode_image
from autovision.errors import AutovisionError, DatasetError
from autovision.security.audit import audited
from autovision.workspace.db import ModelRow, PredictionLogRow

ORIGIN = "feedback"


def feedback_count(ds: Any) -> int:
    """How many items of a dataset version came from reviewed predictions."""
    return sum(1 for it in ds.items if (it.metadata or {}).get("origin") == ORIGIN)


def _records(ws: Any, dataset: str, from_name: str | None) -> list[PredictionLogRow]:
    """Labeled records of model ``from_name``, or (None) of every model trained on ``dataset``."""
    where = [PredictionLogRow.review_status == "labeled"]
    with ws.Session() as s:
        if from_name is not None:
            where.append(PredictionLogRow.name == from_name)
        else:
            ids = list(s.scalars(select(ModelRow.id).where(ModelRow.dataset == dataset)))
            where.append(PredictionLogRow.model_id.in_(ids))
        return list(
            s.scalars(select(PredictionLogRow).where(*where).order_by(PredictionLogRow.time))
        )


def _lineage(row: PredictionLogRow) -> dict[str, str]:
    return {
        "origin": ORIGIN,
        "feedback.prediction_id": row.id,
        "feedback.model": row.model_id,
        "feedback.model_name": row.name,
        "feedback.model_version": "" if row.version is None else str(row.version),
        "feedback.time": row.time.isoformat() if row.time else "",
        "feedback.reviewer": row.reviewer or "",
        "feedback.reviewed_at": row.reviewed_at.isoformat() if row.reviewed_at else "",
        "feedback.predicted_labels": ",".join(row.labels or []),
        "feedback.confidence": f"{float(row.confidence):.6f}",
        "feedback.labels": ",".join(row.review_labels or []),
        "feedback.client_labels": ",".join((row.feedback or {}).get("labels") or []),
    }


def _result(value: dict[str, Any]) -> dict[str, Any]:
    return {k: value[k] for k in ("version", "added", "duplicates", "no_image")}


@audited("dataset.add_feedback", args=("dataset", "from_name", "split"), result=_result)
def add_feedback(
    ws: Any, dataset: str, *, from_name: str | None = None, split: str = "train"
) -> dict[str, Any]:
    """A new version of ``dataset`` with the reviewed images added to ``split``; no version
    when nothing is new. Records without a stored image, or whose image is already in the
    dataset, are counted and left out."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    ds = ws.dataset(dataset)
    seen = {it.sha256 for it in ds.items}
    known = set(ds.labels)
    fresh: list[tuple[PredictionLogRow, bytes, Any]] = []
    counts = {"duplicates": 0, "no_image": 0, "unreadable": 0}
    unknown: set[str] = set()
    for row in _records(ws, ds.name, from_name):
        if not row.image_sha256:
            counts["no_image"] += 1
            continue
        if row.image_sha256 in seen:
            counts["duplicates"] += 1
            continue
        try:
            data = ws.blobs.get(row.image_sha256)
            decoded = decode_image(data, draft=(256, 256))
        except (AutovisionError, OSError, KeyError):
            counts["unreadable"] += 1
            continue
        seen.add(row.image_sha256)
        unknown.update(x for x in row.review_labels or [] if x not in known)
        fresh.append((row, data, decoded))
    base = {"dataset": ds.name, "parent_version": ds.version, "split": split, **counts}
    if not fresh:
        return {**base, "version": ds.version, "added": 0, "items": [], "new_labels": []}
    first = ws.reserve_item_ids(ds.name, len(fresh))
    new_items = []
    for k, (row, _data, decoded) in enumerate(fresh):
        small = quality.thumbnail(decoded.image)
        stats = dict(quality.analyze(small))
        stats.update(width=decoded.width, height=decoded.height)
        new_items.append(
            Item(
                id=first + k,
                sha256=row.image_sha256,
                source=f"prediction:{row.id}",
                labels=tuple(row.review_labels or ()),
                split=split,
                width=decoded.width,
                height=decoded.height,
                format=decoded.format,
                phash=duplicates.perceptual_hash(small) or "",
                metadata=_lineage(row),
                stats=stats,
            )
        )
    multi = ds.multi_label or any(len(it.labels) > 1 for it in new_items)
    params = {k: v for k, v in ds.params.items() if k not in ("excluded", "relabeled", "feedback")}
    params["feedback"] = {
        "added": len(new_items),
        "from": from_name,
        "split": split,
        "prediction_ids": [r.id for r, _, _ in fresh],
    }
    new = ws.create_version(
        ds.name,
        [*ds.items, *new_items],
        multi_label=multi,
        source=ds.source,
        note=f"add-feedback: {len(new_items)} reviewed image(s) from the prediction log",
        parent_version=ds.version,
        params=params,
        problems=ds.problems,
    )
    return {
        **base,
        "version": new.version,
        "added": len(new_items),
        "new_labels": sorted(unknown),
        "items": [{"id": it.id, **it.metadata, "labels": list(it.labels)} for it in new_items],
    }
