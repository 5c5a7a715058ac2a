"""The review queue over the prediction log: uncertain predictions, outliers and client
feedback wait for a reviewer's labels, which ``add_feedback`` turns into a dataset version.

Entry rule (computed by the queue query, so a changed threshold applies to past records):
a single-label record is queued when its top confidence is under the model name's review
threshold (``models set NAME --review-below``, default 0.5); a multi-label record when any
label's probability lies within ``REVIEW_BAND`` of that label's threshold. Records marked
by drift (:func:`mark_outliers`) or sent back by a client (:func:`add_client_feedback`) get
``review_status = "queued"`` written. Labeled and skipped records leave the queue.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from autovision.errors import AutovisionError
from autovision.security.audit import actor, audit_event, audited
from autovision.workspace.db import ModelSettingRow, ModelVersionRow, PredictionLogRow

DEFAULT_REVIEW_BELOW = 0.5
REVIEW_BAND = 0.2  # multi-label: a probability within this of its label's threshold
REVIEW_BELOW_KEY = "review_below"


class ReviewError(AutovisionError):
    """A review operation is invalid (unknown label, record not reviewable)."""


class PredictionNotFound(ReviewError):
    """No logged prediction with this id (or request id)."""


class NotYourPrediction(ReviewError):
    """A client sent feedback for a prediction another key made."""


# ---- settings -------------------------------------------------------------------------


def set_review_below(ws: Any, name: str, value: float) -> float:
    """Store the review threshold of model ``name`` (0 < value <= 1)."""
    if not 0.0 < value <= 1.0:
        raise ReviewError(f"--review-below must be in (0, 1]; got {value}")
    with ws.Session.begin() as s:
        row = s.get(ModelSettingRow, (name, REVIEW_BELOW_KEY))
        if row is None:
            s.add(ModelSettingRow(name=name, key=REVIEW_BELOW_KEY, value=float(value)))
        else:
            row.value = float(value)
    audit_event(ws, "model.settings", target=name, review_below=float(value))
    return float(value)


def review_below(ws: Any, name: str) -> float:
    """The review threshold of model ``name`` (default :data:`DEFAULT_REVIEW_BELOW`)."""
    with ws.Session() as s:
        row = s.get(ModelSettingRow, (name, REVIEW_BELOW_KEY))
    return float(row.value) if row is not None else DEFAULT_REVIEW_BELOW


# ---- model facts ------------------------------------------------------------------------


class _Models:
    """Labels, task and thresholds of the models records name, read once per call."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._meta: dict[str, dict[str, Any]] = {}

    def meta(self, model_id: str) -> dict[str, Any]:
        if model_id not in self._meta:
            try:
                path = Path(self.ws.model(model_id)["path"]) / "model.json"
                self._meta[model_id] = json.loads(path.read_text())
            except (AutovisionError, OSError, ValueError):
                self._meta[model_id] = {}
        return self._meta[model_id]

    def labels(self, model_id: str) -> list[str]:
        return list(self.meta(model_id).get("labels") or [])

    def multi_label(self, model_id: str) -> bool:
        return self.meta(model_id).get("task") == "multi-label"

    def thresholds(self, model_id: str) -> list[float]:
        th = self.meta(model_id).get("thresholds")
        return list(th) if th else [0.5] * len(self.labels(model_id))


def _name_labels(ws: Any, name: str, models: _Models) -> list[str]:
    """Every label the versions of ``name`` know (a new version may add some)."""
    with ws.Session() as s:
        ids = s.scalars(select(ModelVersionRow.model_id).where(ModelVersionRow.name == name))
        ids = list(ids)
    seen: dict[str, None] = {}
    for mid in ids:
        for label in models.labels(mid):
            seen.setdefault(label)
    return list(seen)


def _check_labels(
    labels: Sequence[str], known: Sequence[str], multi: bool, where: str
) -> list[str]:
    labels = [str(x).strip() for x in labels if str(x).strip()]
    if not labels:
        raise ReviewError(f"{where}: no label given")
    labels = list(dict.fromkeys(labels))
    unknown = [x for x in labels if x not in known]
    if unknown:
        raise ReviewError(
            f"{where}: unknown label {', '.join(map(repr, unknown))}; "
            f"the model knows {', '.join(known) or '(no labels)'}"
        )
    if len(labels) > 1 and not multi:
        raise ReviewError(f"{where}: a single-label model takes one label, got {len(labels)}")
    return labels


# ---- the queue ------------------------------------------------------------------------------


def _in_band(row: PredictionLogRow, models: _Models) -> bool:
    th = models.thresholds(row.model_id)
    return any(abs(float(p) - t) <= REVIEW_BAND for p, t in zip(row.probs or [], th, strict=False))


def _reason(row: PredictionLogRow, below: float, models: _Models) -> str | None:
    """Why ``row`` is in the queue, or None when it is not."""
    if row.review_status in ("labeled", "skipped"):
        return None
    if row.feedback:
        return "feedback"
    if models.multi_label(row.model_id):
        if _in_band(row, models):
            return "uncertain"
    elif row.confidence < below:
        return "low_confidence"
    return "flagged" if row.review_status == "queued" else None


def interleave(rows: Sequence[Any]) -> list[Any]:
    """Smallest margin first within each predicted top label, then round-robin over the
    labels (each round ordered by margin), so one class never fills a page."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r.margin, r.time, r.id)):
        groups[r.top_label].append(r)
    queues = list(groups.values())
    out: list[Any] = []
    depth = 0
    while queues:
        heads = sorted((q[depth] for q in queues), key=lambda r: (r.margin, r.time, r.id))
        out.extend(heads)
        depth += 1
        queues = [q for q in queues if len(q) > depth]
    return out


def _item(row: PredictionLogRow, reason: str | None, models: _Models) -> dict[str, Any]:
    labels = models.labels(row.model_id)
    probs = [float(p) for p in row.probs or []]
    return {
        "id": row.id,
        "time": row.time.isoformat() if row.time else None,
        "request_id": row.request_id,
        "name": row.name,
        "model": row.model_id,
        "version": row.version,
        "top_label": row.top_label,
        "labels": list(row.labels or []),
        "confidence": float(row.confidence),
        "margin": float(row.margin),
        "scores": dict(zip(labels, probs, strict=False)) if len(labels) == len(probs) else probs,
        "reason": reason,
        "review_status": "queued" if reason else row.review_status,
        "review_labels": row.review_labels,
        "reviewer": row.reviewer,
        "reviewed_at": row.reviewed_at.isoformat() if row.reviewed_at else None,
        "feedback": row.feedback,
        "image_url": f"/admin/review/{row.name}/{row.id}/image" if row.image_sha256 else None,
    }


def queue(ws: Any, name: str, *, limit: int | None = 50) -> dict[str, Any]:
    """The review queue of model ``name``: ``{"name", "review_below", "total", "items"}``."""
    below = review_below(ws, name)
    models = _Models(ws)
    with ws.Session() as s:
        open_ = or_(
            PredictionLogRow.review_status.is_(None), PredictionLogRow.review_status == "queued"
        )
        rows = list(s.scalars(select(PredictionLogRow).where(PredictionLogRow.name == name, open_)))
    reasons = {r.id: _reason(r, below, models) for r in rows}
    queued = interleave([r for r in rows if reasons[r.id]])
    shown = queued if limit is None else queued[: max(0, limit)]
    return {
        "name": name,
        "review_below": below,
        "total": len(queued),
        "items": [_item(r, reasons[r.id], models) for r in shown],
    }


def get(ws: Any, prediction_id: str, *, name: str | None = None) -> PredictionLogRow:
    """The logged prediction ``prediction_id`` (of model ``name`` when given)."""
    with ws.Session() as s:
        row = s.get(PredictionLogRow, prediction_id)
    if row is None or (name is not None and row.name != name):
        raise PredictionNotFound(f"no logged prediction {prediction_id!r}")
    return row


def mark_outliers(ws: Any, prediction_ids: Iterable[str]) -> int:
    """Queue records drift flagged as outliers (not those already reviewed); the count."""
    ids = list(dict.fromkeys(prediction_ids))
    n = 0
    with ws.Session.begin() as s:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for row in s.scalars(select(PredictionLogRow).where(PredictionLogRow.id.in_(chunk))):
                if row.review_status is None:
                    row.review_status = "queued"
                    n += 1
    return n


def _reviewer() -> str:
    who = actor()
    return str(who.get("key_id") or who.get("user") or "unknown")


@audited("review.label", args=("prediction_id", "labels"))
def label(
    ws: Any, prediction_id: str, labels: Sequence[str], *, name: str | None = None
) -> dict[str, Any]:
    """Give ``prediction_id`` its reviewed labels (the model's labels only)."""
    models = _Models(ws)
    with ws.Session.begin() as s:
        row = s.get(PredictionLogRow, prediction_id)
        if row is None or (name is not None and row.name != name):
            raise PredictionNotFound(f"no logged prediction {prediction_id!r}")
        known = _name_labels(ws, row.name, models) or models.labels(row.model_id)
        multi = models.multi_label(row.model_id)
        row.review_labels = _check_labels(labels, known, multi, prediction_id)
        row.review_status = "labeled"
        row.reviewer = _reviewer()
        row.reviewed_at = datetime.now(UTC)
        return _item(row, None, models)


@audited("review.skip", args=("prediction_id",))
def skip(ws: Any, prediction_id: str, *, name: str | None = None) -> dict[str, Any]:
    """Take ``prediction_id`` out of the queue without a label."""
    models = _Models(ws)
    with ws.Session.begin() as s:
        row = s.get(PredictionLogRow, prediction_id)
        if row is None or (name is not None and row.name != name):
            raise PredictionNotFound(f"no logged prediction {prediction_id!r}")
        row.review_status = "skipped"
        row.reviewer = _reviewer()
        row.reviewed_at = datetime.now(UTC)
        return _item(row, None, models)


def label_file(ws: Any, path: str | Path) -> dict[str, Any]:
    """Apply ``prediction_id,label[,label...]`` rows; bad rows are reported by line number
    and the rest applied. ``{"applied": N, "errors": [{"line", "id", "message"}]}``."""
    applied: list[str] = []
    errors: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if line_no == 1 and cells[0].lower() in ("prediction_id", "id"):
                continue  # a header
            pid, labels = cells[0], [c for c in cells[1:] if c]
            try:
                if not labels:
                    raise ReviewError(f"{pid}: no label given")
                label(ws, pid, labels)
                applied.append(pid)
            except ReviewError as exc:
                errors.append({"line": line_no, "id": pid, "message": str(exc)})
    return {"file": str(path), "applied": len(applied), "errors": errors}


def stats(ws: Any, name: str) -> dict[str, Any]:
    """Queued, labeled and skipped counts, reviewed labels, and how often the reviewers
    agreed with the model (same label set as the model decided)."""
    total = queue(ws, name, limit=0)["total"]
    with ws.Session() as s:
        rows = list(
            s.scalars(
                select(PredictionLogRow).where(
                    PredictionLogRow.name == name,
                    PredictionLogRow.review_status.in_(("labeled", "skipped")),
                )
            )
        )
    labeled = [r for r in rows if r.review_status == "labeled"]
    by_label: Counter[str] = Counter(x for r in labeled for x in r.review_labels or [])
    agree = sum(1 for r in labeled if set(r.review_labels or []) == set(r.labels or []))
    feedback = [r for r in labeled if r.feedback]
    feedback_agree = sum(
        1 for r in feedback if set(r.review_labels or []) == set(r.feedback.get("labels") or [])
    )
    return {
        "name": name,
        "queued": total,
        "labeled": len(labeled),
        "skipped": len(rows) - len(labeled),
        "by_label": dict(sorted(by_label.items())),
        "agreement": round(agree / len(labeled), 4) if labeled else None,
        "feedback_confirmed": round(feedback_agree / len(feedback), 4) if feedback else None,
    }


# ---- client feedback --------------------------------------------------------------------------


def add_client_feedback(
    ws: Any,
    request_id: str,
    labels: Sequence[str],
    *,
    instance: int = 0,
    key_id: str | None,
    admin: bool = False,
) -> dict[str, Any]:
    """A client's "this is wrong": the labels it says are right for image ``instance`` of
    its earlier request ``request_id``. Only the key that made the prediction may send it
    (``admin`` may for any); a prediction logged without a key (auth off) takes feedback
    from a caller without a key. Queues the record as a suggestion a reviewer confirms."""
    models = _Models(ws)
    with ws.Session.begin() as s:
        row = s.scalar(
            select(PredictionLogRow).where(
                PredictionLogRow.request_id == request_id, PredictionLogRow.instance == instance
            )
        )
        if row is None:
            raise PredictionNotFound(
                f"no logged prediction for request {request_id!r} instance {instance}"
            )
        if not admin and row.key_id != key_id:
            raise NotYourPrediction("this prediction was not made with your API key")
        known = _name_labels(ws, row.name, models) or models.labels(row.model_id)
        given = _check_labels(labels, known, models.multi_label(row.model_id), request_id)
        row.feedback = {"labels": given, "key_id": key_id, "time": datetime.now(UTC).isoformat()}
        if row.review_status is None:
            row.review_status = "queued"
        out = {"id": row.id, "request_id": request_id, "instance": instance, "labels": given}
    audit_event(ws, "review.feedback", target=out["id"], key_id=key_id, labels=given)
    return {**out, "review_status": "queued"}


# add_feedback (a dataset version from reviewed records) lives in monitoring/feedback.py
__all__ = [
    "DEFAULT_REVIEW_BELOW",
    "REVIEW_BAND",
    "NotYourPrediction",
    "PredictionNotFound",
    "ReviewError",
    "add_client_feedback",
    "get",
    "interleave",
    "label",
    "label_file",
    "mark_outliers",
    "queue",
    "review_below",
    "set_review_below",
    "skip",
    "stats",
]


from autovision.monitoring.feedback import add_feedback, feedback_count  # noqa: E402

__all__ += ["add_feedback", "feedback_count"]
