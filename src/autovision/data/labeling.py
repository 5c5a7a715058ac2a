"""The labeling queue: a dataset's unlabeled images, pre-labelled by its production model and
most uncertain first, and the labels people give them turned into a new dataset version.

- Unlabeled: items without a label (imported without one, or ``UNASSIGNED`` rows with no
  label); they already have a split, which they keep.
- Pre-labels: the version with alias ``production`` of the model named like the dataset, else
  of any model trained on it (the newest). Its probabilities are computed once per image and
  model (content addressed, under ``cache/labeling/``), so the queue's later pages cost no
  inference. Without such a model the queue is in item id order, with no guess.
- Uncertainty: single-label, the lowest top probability first (then the smallest margin);
  multi-label, the label probability closest to its threshold first.
- The draft: each answer is kept in ``label_drafts`` (shared by everyone labeling the dataset;
  an empty list means skipped) and leaves the queue; :func:`save_draft` applies the labels to
  the newest version in one new version (lineage ``labeled``: the ids) and clears the draft.
  One version per session of labeling, not per click.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from autovision.data.dataset import DatasetVersion, parse_ref
from autovision.data.readers import check_label
from autovision.errors import AutovisionError, DatasetError
from autovision.security import crypto
from autovision.security.audit import audited
from autovision.workspace.db import DatasetRow, ItemRow, LabelDraftRow, VersionRow

__all__ = [
    "PRODUCTION",
    "apply_labels",
    "discard_draft",
    "draft",
    "draft_label",
    "draft_skip",
    "label_queue",
    "prelabel_model",
    "save_draft",
]

PRODUCTION = "production"
BATCH = 32
_LINEAGE_KEYS = ("excluded", "excluded_issues", "relabeled", "suggestions", "feedback", "labeled")
_lock = threading.Lock()


# ---- the model that pre-labels ------------------------------------------------------------


def prelabel_model(ws: Any, dataset: str) -> Any | None:
    """The ``production`` version of the model named ``dataset``, else the newest
    ``production`` version of a model trained on ``dataset``; None when there is none."""
    from autovision.versions.store import list_versions

    found = [
        mv
        for mv in list_versions(ws)
        if PRODUCTION in mv.aliases and (mv.name == dataset or mv.dataset == dataset)
    ]
    if not found:
        return None
    return min(found, key=lambda mv: (mv.name != dataset, -mv.dataset_version, mv.created_at))


def _cache_path(ws: Any, model_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
    return Path(ws.cache_dir) / "labeling" / f"{safe}.json"


def _read_cache(ws: Any, model_id: str) -> dict[str, list[float]]:
    path = _cache_path(ws, model_id)
    if not path.exists():
        return {}
    try:
        return json.loads(crypto.read_file(path, f"labeling:{model_id}".encode(), ws.blobs.key))
    except (OSError, ValueError, AutovisionError):
        return {}  # a damaged cache is recomputed


def _predict(ws: Any, mv: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Probabilities of the model for each row's image (by sha256); an image that does not
    decode gets none (it stays in the queue without a guess)."""
    from autovision.data.decode import load_rgb
    from autovision.models.package import ModelPackage
    from autovision.models.preprocess import preprocess

    pkg = ModelPackage.load(ws.package_path(mv.id, mv.path))
    out: dict[str, list[float]] = {}
    for start in range(0, len(rows), BATCH):
        shas, images = [], []
        for row in rows[start : start + BATCH]:
            try:
                images.append(load_rgb(ws.blobs.get(row["sha256"])))
                shas.append(row["sha256"])
            except (AutovisionError, OSError, KeyError, ValueError):
                continue
        if images:
            probs = pkg.predict_array(preprocess(images, pkg.preprocessing))
            for sha, p in zip(shas, np.asarray(probs, dtype=np.float64), strict=True):
                out[sha] = [round(float(x), 6) for x in p]
    return out


def _probabilities(ws: Any, mv: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Cached probabilities, the missing ones computed (once) and stored."""
    with _lock:
        cached = _read_cache(ws, mv.id)
        missing = {r["sha256"]: r for r in rows if r["sha256"] not in cached}
        if missing:
            cached.update(_predict(ws, mv, list(missing.values())))
            path = _cache_path(ws, mv.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = json.dumps(cached, separators=(",", ":")).encode()
            crypto.write_file(path, data, f"labeling:{mv.id}".encode(), ws.blobs.key)
    return cached


def _model_facts(mv: Any) -> tuple[list[str], bool, list[float]]:
    meta = json.loads((Path(mv.path) / "model.json").read_text())
    labels = list(meta.get("labels") or [])
    multi = meta.get("task") == "multi-label"
    th = meta.get("thresholds") or [0.5] * len(labels)
    return labels, multi, [float(t) for t in th]


def _guess(probs: list[float], labels: list[str], multi: bool, th: list[float]) -> dict[str, Any]:
    p = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    top = float(p[order[0]])
    margin = top - (float(p[order[1]]) if len(p) > 1 else 0.0)
    if multi:
        guess = [labels[i] for i in order if p[i] >= th[i]]
        uncertainty = -float(np.min(np.abs(p - np.asarray(th))))  # nearest to its threshold
        key = (-uncertainty, margin)
    else:
        guess = [labels[int(order[0])]]
        key = (top, margin)
    return {
        "guess": guess,
        "scores": {labels[int(i)]: round(float(p[i]), 4) for i in order[:5]},
        "confidence": round(top, 4),
        "margin": round(margin, 4),
        "rank_key": key,
    }


# ---- the queue ----------------------------------------------------------------------------


def _version(ws: Any, ref: str) -> tuple[str, int, int, bool]:
    """``(name, version, version row id, multi_label)``; the newest version for ``NAME``."""
    name, version = parse_ref(ref)
    with ws.Session() as s:
        q = (
            select(VersionRow.version, VersionRow.id, VersionRow.multi_label)
            .join(DatasetRow, DatasetRow.id == VersionRow.dataset_id)
            .where(DatasetRow.name == name)
        )
        q = q.where(VersionRow.version == version) if version else q
        row = s.execute(q.order_by(VersionRow.version.desc()).limit(1)).first()
    if row is None:
        if name not in ws.dataset_names():
            raise DatasetError(f"no dataset named {name!r} in {ws.root}")
        raise DatasetError(f"dataset {name!r} has no version {version}")
    return name, int(row[0]), int(row[1]), bool(row[2])


def _rows(ws: Any, version_row: int) -> list[dict[str, Any]]:
    cols = (ItemRow.item_id, ItemRow.sha256, ItemRow.source, ItemRow.split, ItemRow.labels)
    with ws.Session() as s:
        q = select(*cols).where(ItemRow.version_id == version_row).order_by(ItemRow.item_id)
        return [
            {"id": int(i), "sha256": sha, "source": src, "split": split, "labels": list(labs or [])}
            for i, sha, src, split, labs in s.execute(q)
        ]


def draft(ws: Any, dataset: str) -> dict[int, list[str]]:
    """The draft of ``dataset``: ``{item id: labels}`` (``[]``: skipped)."""
    with ws.Session() as s:
        rows = s.scalars(select(LabelDraftRow).where(LabelDraftRow.dataset == dataset))
        return {int(r.item_id): list(r.labels or []) for r in rows}


def label_queue(ws: Any, ref: str, *, limit: int = 20, use_model: bool = True) -> dict[str, Any]:
    """The unlabeled images of ``ref`` not answered in the draft, most uncertain first.

    ``{"dataset", "version", "multi_label", "unlabeled", "remaining", "drafted", "skipped",
    "model" (ref or None), "labels" (known, sorted), "items": [{"id", "source", "sha256",
    "split", "guess", "scores", "confidence", "margin"}]}``.
    """
    name, version, row_id, multi = _version(ws, ref)
    rows = _rows(ws, row_id)
    known = {lab for r in rows for lab in r["labels"]}
    answered = draft(ws, name)
    unlabeled = [r for r in rows if not r["labels"]]
    todo = [r for r in unlabeled if r["id"] not in answered]
    mv = prelabel_model(ws, name) if use_model else None
    model_labels: list[str] = []
    if mv is not None and todo:
        model_labels, model_multi, th = _model_facts(mv)
        probs = _probabilities(ws, mv, todo)
        for r in todo:
            p = probs.get(r["sha256"])
            if p is not None and len(p) == len(model_labels):
                r.update(_guess(p, model_labels, model_multi, th))
        # guessed ones by uncertainty, then those the model could not read, by id
        todo.sort(
            key=lambda r: (0, r["rank_key"], r["id"]) if "rank_key" in r else (1, (), r["id"])
        )
    elif mv is not None:
        model_labels = _model_facts(mv)[0]
    known.update(model_labels)
    known.update(lab for labs in answered.values() for lab in labs)
    items = []
    for r in todo[: max(0, limit)]:
        r.pop("rank_key", None)
        r.pop("labels", None)
        items.append({"guess": [], "scores": {}, "confidence": None, "margin": None, **r})
    return {
        "dataset": name,
        "version": version,
        "multi_label": multi,
        "unlabeled": len(unlabeled),
        "remaining": len(todo),
        "drafted": sum(1 for v in answered.values() if v),
        "skipped": sum(1 for v in answered.values() if not v),
        "model": mv.ref if mv is not None else None,
        "labels": sorted(known),
        "items": items,
    }


# ---- answers ------------------------------------------------------------------------------


def _clean_labels(labels: Iterable[str], multi: bool, where: str) -> list[str]:
    out: list[str] = []
    for text in labels:
        label, why = check_label(str(text))
        if label is None:
            raise DatasetError(f"{where}: {why}")
        if label not in out:
            out.append(label)
    if not out:
        raise DatasetError(f"{where}: no label given")
    if len(out) > 1 and not multi:
        raise DatasetError(f"{where}: {len(out)} labels but the dataset is single-label")
    return sorted(out)


def _put(ws: Any, dataset: str, version: int, item_id: int, labels: list[str], user: Any) -> None:
    with ws.Session.begin() as s:
        row = s.get(LabelDraftRow, (dataset, item_id))
        if row is None:
            row = LabelDraftRow(dataset=dataset, item_id=item_id)
            s.add(row)
        row.base_version, row.labels, row.user = version, labels, user
        row.updated_at = datetime.now(UTC)


def _unlabeled_item(ws: Any, ref: str, item_id: int) -> tuple[str, int, bool]:
    name, version, row_id, multi = _version(ws, ref)
    with ws.Session() as s:
        labels = s.scalar(
            select(ItemRow.labels).where(
                ItemRow.version_id == row_id, ItemRow.item_id == int(item_id)
            )
        )
    if labels is None:
        raise DatasetError(f"{name}@{version} has no image with id {item_id}")
    if labels:
        raise DatasetError(f"image {item_id} of {name}@{version} is labeled already")
    return name, version, multi


def _who() -> str | None:
    from autovision.security.audit import actor

    who = actor()
    return who.get("user") or who.get("key_id")


def draft_label(ws: Any, ref: str, item_id: int, labels: Iterable[str]) -> dict[str, Any]:
    """Keep ``labels`` for the unlabeled image ``item_id`` of ``ref`` in the draft."""
    name, version, multi = _unlabeled_item(ws, ref, item_id)
    clean = _clean_labels(labels, multi, f"image {item_id} of {name}@{version}")
    _put(ws, name, version, int(item_id), clean, _who())
    return {"dataset": name, "id": int(item_id), "labels": clean}


def draft_skip(ws: Any, ref: str, item_id: int) -> dict[str, Any]:
    """Take image ``item_id`` out of the queue until the draft is saved or discarded."""
    name, version, _ = _unlabeled_item(ws, ref, item_id)
    _put(ws, name, version, int(item_id), [], _who())
    return {"dataset": name, "id": int(item_id), "labels": []}


def discard_draft(ws: Any, dataset: str, ids: Iterable[int] | None = None) -> int:
    """Forget the draft of ``dataset`` (only the answers for ``ids`` when given); how many
    answers were forgotten."""
    with ws.Session.begin() as s:
        stmt = delete(LabelDraftRow).where(LabelDraftRow.dataset == dataset)
        if ids is None:
            return int(s.execute(stmt).rowcount or 0)
        wanted, n = sorted(int(i) for i in ids), 0
        for start in range(0, len(wanted), 500):  # bound parameters per statement
            chunk = wanted[start : start + 500]
            n += int(s.execute(stmt.where(LabelDraftRow.item_id.in_(chunk))).rowcount or 0)
        return n


@audited(
    "dataset.label",
    args=("ref",),
    result=lambda v: {"version": v.ref, "labeled": (v.params or {}).get("labeled", [])},
)
def apply_labels(
    ws: Any, ref: str, labels: Mapping[int, Iterable[str]], *, note: str | None = None
) -> DatasetVersion:
    """A new version of ``ref`` in which the unlabeled images ``labels`` names get those
    labels (lineage ``labeled``: their ids); ``ref`` itself when nothing changes. An id the
    version lacks, or one that is labeled already, is refused with its id."""
    ds = ws.dataset(ref)
    known = ds.by_id()
    changes: dict[int, tuple[str, ...]] = {}
    for raw_id, labs in labels.items():
        item_id = int(raw_id)
        item = known.get(item_id)
        if item is None:
            raise DatasetError(f"{ds.ref} has no image with id {item_id}")
        if item.labels:
            raise DatasetError(f"image {item_id} of {ds.ref} is labeled already")
        where = f"image {item_id} of {ds.ref}"
        changes[item_id] = tuple(_clean_labels(labs, ds.multi_label, where))
    if not changes:
        return ds
    items = [replace(it, labels=changes[it.id]) if it.id in changes else it for it in ds.items]
    ids = sorted(changes)
    shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    params = {k: v for k, v in ds.params.items() if k not in _LINEAGE_KEYS}
    params["labeled"] = ids
    return ws.create_version(
        ds.name,
        items,
        multi_label=ds.multi_label,
        source=ds.source,
        note=note or f"labeled {len(ids)} unlabeled images of {ds.ref}: ids {shown}",
        parent_version=ds.version,
        params=params,
        problems=ds.problems,
    )


def save_draft(ws: Any, dataset: str) -> dict[str, Any]:
    """Apply the draft's labels to the newest version of ``dataset`` (one new version) and
    clear the draft. Answers for images the newest version lacks or has labeled since are
    dropped and counted in ``stale``. ``{"dataset", "version", "labeled", "skipped", "stale"}``."""
    answers = draft(ws, dataset)
    ds = ws.dataset(dataset)
    known = ds.by_id()
    given = {i: labs for i, labs in answers.items() if labs}
    fresh = {i: labs for i, labs in given.items() if i in known and not known[i].labels}
    new = apply_labels(ws, ds.ref, fresh) if fresh else ds
    discard_draft(ws, dataset, answers)  # answers given meanwhile stay for the next save
    return {
        "dataset": dataset,
        "version": new.version,
        "created": new.version != ds.version,
        "labeled": len(fresh),
        "skipped": len(answers) - len(given),
        "stale": len(given) - len(fresh),
    }
