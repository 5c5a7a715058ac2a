"""The drift checks ``autovision monitor`` ran, kept in the workspace: the verdict, every
test, the verdict per day and the histogram data of the report's plots (reference vs recent),
so the console draws the latest check of each model version without recomputing it."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from autovision.monitoring.drift import Sample
from autovision.monitoring.reference import Reference

BINS = 20
KEEP_PER_MODEL = 50
"""Checks kept per model version (the oldest are deleted as new ones are saved)."""
_STORED = (
    "model",
    "model_id",
    "verdict",
    "samples",
    "reference_samples",
    "alpha",
    "correction",
    "tests",
    "notes",
    "window",
    "reference",
    "daily",
)


def _hist(ref: np.ndarray, recent: np.ndarray) -> dict[str, Any] | None:
    ref, recent = ref[~np.isnan(ref)], recent[~np.isnan(recent)]
    if not len(ref) and not len(recent):
        return None
    both = np.concatenate([ref, recent])
    lo, hi = float(both.min()), float(both.max())
    edges = np.linspace(lo, hi + 1e-9 if hi > lo else lo + 1.0, BINS + 1)

    def density(x: np.ndarray) -> list[float]:
        counts = np.histogram(x, bins=edges)[0]
        return [round(float(c) / max(len(x), 1), 6) for c in counts]

    return {
        "edges": [round(float(e), 6) for e in edges],
        "reference": density(ref),
        "recent": density(recent),
    }


def plot_data(reference: Reference, recent: Sample) -> dict[str, Any]:
    """The numbers behind the report's plots: predicted-label shares and, per quantity
    (top-1 confidence, each input statistic), the share of images in each of ``BINS`` bins
    over a common range."""
    k = len(reference.labels)
    out: dict[str, Any] = {"labels": None, "histograms": {}}
    if not len(recent) or recent.probs.shape[1] != k:
        return out
    ref_share = np.bincount(reference.sample.probs.argmax(1), minlength=k) / max(len(reference), 1)
    rec_share = np.bincount(recent.probs.argmax(1), minlength=k) / max(len(recent), 1)
    out["labels"] = {
        "names": list(reference.labels),
        "reference": [round(float(x), 6) for x in ref_share],
        "recent": [round(float(x), 6) for x in rec_share],
    }
    hists = {"confidence": _hist(reference.sample.probs.max(1), recent.probs.max(1))}
    for name in sorted(set(reference.sample.stats) & set(recent.stats)):
        hists[f"input:{name}"] = _hist(reference.sample.stats[name], recent.stats[name])
    out["histograms"] = {k: v for k, v in hists.items() if v is not None}
    return out


def save_check(
    ws: Any, result: dict[str, Any], plots: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Store one ``monitor`` result (and its plot data); returns it as :func:`checks` does."""
    from autovision.versions.store import version_of
    from autovision.workspace.db import DriftCheckRow

    mv = version_of(ws, result["model_id"])
    stored = {k: result[k] for k in _STORED if k in result}
    stored["outliers"] = {k: v for k, v in (result.get("outliers") or {}).items() if k != "ids"}
    stored["plots"] = plots or {"labels": None, "histograms": {}}
    with ws.Session.begin() as s:
        row = DriftCheckRow(
            name=mv.name if mv else "",
            model_id=result["model_id"],
            version=mv.version if mv else None,
            verdict=result["verdict"],
            samples=int(result.get("samples") or 0),
            result=stored,
        )
        s.add(row)
        s.flush()
        old = list(
            s.scalars(
                select(DriftCheckRow.id)
                .where(DriftCheckRow.model_id == result["model_id"])
                .order_by(DriftCheckRow.created_at.desc(), DriftCheckRow.id.desc())
                .offset(KEEP_PER_MODEL)
            )
        )
        for old_id in old:
            s.delete(s.get(DriftCheckRow, old_id))
        return _dict(row)


def _dict(row: Any) -> dict[str, Any]:
    when = row.created_at
    return {
        "id": row.id,
        "name": row.name,
        "model_id": row.model_id,
        "version": row.version,
        "created_at": when.isoformat() if when else None,
        "verdict": row.verdict,
        "samples": row.samples,
        **{k: v for k, v in (row.result or {}).items() if k not in ("verdict", "samples")},
    }


def checks(ws: Any, name: str | None = None, *, limit: int = 20) -> list[dict[str, Any]]:
    """Stored checks, newest first (of model ``name``'s versions when given)."""
    from autovision.workspace.db import DriftCheckRow as D

    q = select(D).order_by(D.created_at.desc(), D.id.desc()).limit(limit)
    if name is not None:
        q = q.where(D.name == name)
    with ws.Session() as s:
        return [_dict(r) for r in s.scalars(q)]


def latest_checks(ws: Any, name: str | None = None) -> list[dict[str, Any]]:
    """The newest stored check of each model version (of ``name``), newest version first."""
    seen: dict[str, dict[str, Any]] = {}
    for c in checks(ws, name, limit=KEEP_PER_MODEL * 4):
        seen.setdefault(c["model_id"], c)
    return sorted(seen.values(), key=lambda c: (c["name"], -(c["version"] or 0)))
