"""Pipeline runs and their stage records in the workspace database (``pipeline_runs``,
``pipeline_stages``): what ran, with which inputs and parameters, what it made, how long it
took; and the lookups the runner's cache and resume use."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from autovision.errors import PipelineError
from autovision.jobs.store import aware, plain
from autovision.workspace.db import PipelineRunRow, PipelineStageRow, utcnow

RUNNING, DONE, FAILED, GATE_FAILED = "running", "done", "failed", "gate_failed"
REUSED, SKIPPED, INTERRUPTED = "reused", "skipped", "interrupted"
WORK_DONE = (DONE, GATE_FAILED)  # the stage's work finished: its outputs can be reused


def new_run_id() -> str:
    return f"prun-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _iso(d: datetime | None) -> str | None:
    d = aware(d)
    return d.isoformat() if d else None


def create_run(
    ws: Any,
    pipeline: str,
    *,
    file: str,
    spec: dict[str, Any],
    card: dict[str, Any] | None,
    trigger: str,
    version: str,
) -> str:
    run_id = new_run_id()
    with ws.Session.begin() as s:
        s.add(
            PipelineRunRow(
                id=run_id,
                pipeline=pipeline,
                file=file,
                spec=plain(spec),
                card=plain(card) if card else None,
                status=RUNNING,
                trigger=trigger,
                autovision_version=version,
                pid=os.getpid(),
            )
        )
    return run_id


def finish_run(ws: Any, run_id: str, status: str, message: str) -> None:
    with ws.Session.begin() as s:
        s.execute(
            update(PipelineRunRow)
            .where(PipelineRunRow.id == run_id)
            .values(status=status, message=message, finished_at=utcnow())
        )


def add_stage(ws: Any, run_id: str, pipeline: str, stage: str, position: int, **values: Any) -> int:
    values = {k: plain(v) if isinstance(v, dict) else v for k, v in values.items()}
    row = PipelineStageRow(run_id=run_id, pipeline=pipeline, stage=stage, position=position)
    for k, v in values.items():
        setattr(row, k, v)
    with ws.Session.begin() as s:
        s.add(row)
        s.flush()
        return int(row.id)


def update_stage(ws: Any, stage_id: int, **values: Any) -> None:
    values = {k: plain(v) if isinstance(v, dict) else v for k, v in values.items()}
    with ws.Session.begin() as s:
        s.execute(update(PipelineStageRow).where(PipelineStageRow.id == stage_id).values(**values))


def mark_interrupted(ws: Any, pipeline: str) -> list[str]:
    """Runs of ``pipeline`` still marked running (the caller holds the pipeline's lock, so
    their process is gone): they and their running stages become ``interrupted``."""
    with ws.Session.begin() as s:
        ids = list(
            s.scalars(
                select(PipelineRunRow.id).where(
                    PipelineRunRow.pipeline == pipeline, PipelineRunRow.status == RUNNING
                )
            )
        )
        if ids:
            s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.id.in_(ids))
                .values(status=INTERRUPTED, message="stopped before the end (killed?)")
            )
            s.execute(
                update(PipelineStageRow)
                .where(PipelineStageRow.run_id.in_(ids), PipelineStageRow.status == RUNNING)
                .values(status=INTERRUPTED, message="stopped before the end (killed?)")
            )
    return ids


def _stage_dict(r: PipelineStageRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "run_id": r.run_id,
        "stage": r.stage,
        "status": r.status,
        "cache_key": r.cache_key,
        "params": dict(r.params or {}),
        "inputs": dict(r.inputs or {}),
        "outputs": dict(r.outputs or {}),
        "gate": r.gate,
        "state": dict(r.state or {}),
        "reused_from": r.reused_from,
        "message": r.message,
        "started_at": _iso(r.started_at),
        "finished_at": _iso(r.finished_at),
        "seconds": r.seconds,
    }


def _run_dict(r: PipelineRunRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "pipeline": r.pipeline,
        "file": r.file,
        "status": r.status,
        "trigger": r.trigger,
        "autovision_version": r.autovision_version,
        "created_at": _iso(r.created_at),
        "finished_at": _iso(r.finished_at),
        "message": r.message,
        "card": r.card,
    }


def last_work(ws: Any, pipeline: str, stage: str, key: str) -> dict[str, Any] | None:
    """The latest record of ``stage`` with this cache key whose work finished."""
    with ws.Session() as s:
        row = s.scalar(
            select(PipelineStageRow)
            .where(
                PipelineStageRow.pipeline == pipeline,
                PipelineStageRow.stage == stage,
                PipelineStageRow.cache_key == key,
                PipelineStageRow.status.in_(WORK_DONE),
            )
            .order_by(PipelineStageRow.id.desc())
            .limit(1)
        )
        return _stage_dict(row) if row is not None else None


def last_interrupted(ws: Any, pipeline: str, stage: str, key: str) -> dict[str, Any] | None:
    """The latest record of ``stage`` with this key that was cut short, if it is the latest
    record of that key at all (a later finished one means there is nothing to resume)."""
    with ws.Session() as s:
        row = s.scalar(
            select(PipelineStageRow)
            .where(
                PipelineStageRow.pipeline == pipeline,
                PipelineStageRow.stage == stage,
                PipelineStageRow.cache_key == key,
                PipelineStageRow.status.in_((INTERRUPTED, FAILED, DONE, GATE_FAILED)),
            )
            .order_by(PipelineStageRow.id.desc())
            .limit(1)
        )
        if row is None or row.status not in (INTERRUPTED, FAILED):
            return None
        return _stage_dict(row)


def latest_stage(ws: Any, pipeline: str, stage: str) -> dict[str, Any] | None:
    """The latest record of ``stage`` in any run of ``pipeline`` whose work finished."""
    with ws.Session() as s:
        row = s.scalar(
            select(PipelineStageRow)
            .where(
                PipelineStageRow.pipeline == pipeline,
                PipelineStageRow.stage == stage,
                PipelineStageRow.status.in_((*WORK_DONE, REUSED)),
            )
            .order_by(PipelineStageRow.id.desc())
            .limit(1)
        )
        return _stage_dict(row) if row is not None else None


def list_runs(ws: Any, pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Runs, newest first, each with ``stages``: ``{stage: status}``."""
    q = select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id.desc())
    if pipeline is not None:
        q = q.where(PipelineRunRow.pipeline == pipeline)
    with ws.Session() as s:
        runs = [_run_dict(r) for r in s.scalars(q.limit(limit))]
        for run in runs:
            rows = s.scalars(
                select(PipelineStageRow)
                .where(PipelineStageRow.run_id == run["id"])
                .order_by(PipelineStageRow.position)
            )
            run["stages"] = {r.stage: r.status for r in rows}
    return runs


def get_run(ws: Any, run_id: str) -> dict[str, Any]:
    """One run with its spec and every stage record."""
    with ws.Session() as s:
        row = s.get(PipelineRunRow, run_id)
        if row is None:
            raise PipelineError(f"no pipeline run {run_id!r} in {ws.root}")
        out = _run_dict(row) | {"spec": row.spec}
        rows = s.scalars(
            select(PipelineStageRow)
            .where(PipelineStageRow.run_id == run_id)
            .order_by(PipelineStageRow.position)
        )
        out["stages"] = [_stage_dict(r) for r in rows]
    return out


def card_of_model(ws: Any, model_id: str) -> dict[str, Any] | None:
    """The ``card:`` block of the latest pipeline run whose train stage made (or reused)
    ``model_id`` (what a model card takes its intended use and limitations from)."""
    with ws.Session() as s:
        rows = s.execute(
            select(PipelineStageRow.outputs, PipelineRunRow.card)
            .join(PipelineRunRow, PipelineRunRow.id == PipelineStageRow.run_id)
            .where(
                PipelineStageRow.stage == "train",
                PipelineStageRow.status.in_((DONE, REUSED)),
            )
            .order_by(PipelineStageRow.id.desc())
        )
        for outputs, card in rows:
            if (outputs or {}).get("model") == model_id:
                return card
    return None
