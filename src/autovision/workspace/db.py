"""Metadata schema (SQLAlchemy 2). SQLite by default, any SQLAlchemy URL by setting.

A change here ships with a migration in ``migrations/versions/`` (docs/schema-migrations.md);
a test fails while the newest revision and these tables differ."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_item_id: Mapped[int] = mapped_column(Integer, default=1)


class VersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    multi_label: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)


class ItemRow(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("version_id", "item_id"),
        # The console gallery's filtered pages in item id order (data/gallery.py).
        Index("ix_items_version_split_item", "version_id", "split", "item_id"),
        # PostgreSQL cannot index a json column: the labels index is for SQLite.
        Index("ix_items_version_labels_item", "version_id", "labels", "item_id").ddl_if(
            dialect="sqlite"
        ),
    )
    pk: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    item_id: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(Text)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    split: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    phash: Mapped[str] = mapped_column(String(32), default="")
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelRow(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    dataset_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    task: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="ready")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ModelVersionRow(Base):
    """A named model's version: ``NAME@VERSION`` is model ``model_id`` (see ``versions/``)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasRow(Base):
    """Where an alias of a named model points now (``default`` always exists)."""

    __tablename__ = "model_aliases"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasEventRow(Base):
    """One alias move or decision, append-only: the history and what rollback replays."""

    __tablename__ = "model_alias_events"
    __table_args__ = (Index("ix_model_alias_events_name_alias", "name", "alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    name: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class UsageRecordRow(Base):
    """One usage record, written as the work happens: a training run (``train``) or one
    served model's flush window (``serve``); ``data`` holds the figures (see ``usage/``)."""

    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    subject: Mapped[str] = mapped_column(String(200), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ShadowRecordRow(Base):
    """One image of a request answered by the champion and also run on a shadow challenger
    (``autovision serve --shadow``): both predictions side by side."""

    __tablename__ = "shadow_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(String(128), default="")
    instance: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200), default="", index=True)
    champion_id: Mapped[str] = mapped_column(String(64), index=True)
    champion_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    challenger_id: Mapped[str] = mapped_column(String(64), index=True)
    challenger_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    champion_probs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    challenger_probs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    champion_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    challenger_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)


class PredictionLogRow(Base):
    """One image of a served prediction (``autovision serve``; see ``monitoring/log.py``):
    what came in, what the model said, and, later, what a reviewer or the client said."""

    __tablename__ = "prediction_log"
    __table_args__ = (Index("ix_prediction_log_name_time", "name", "time"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(String(128), default="", index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    name: Mapped[str] = mapped_column(String(200), default="", index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    route: Mapped[str] = mapped_column(String(32), default="")
    instance: Mapped[int] = mapped_column(Integer, default=0)
    probs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    top_label: Mapped[str] = mapped_column(String(200), default="")
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    margin: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    embedding: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    image_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    review_status: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    review_labels: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    reviewer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    feedback: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ModelSettingRow(Base):
    """A setting of a named model (``autovision models set NAME --review-below 0.6``)."""

    __tablename__ = "model_settings"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class DatasetCheckRow(Base):
    """The latest result of one model-based check (``label_issues``, ``outliers``,
    ``content_duplicates``) of one dataset version; see :mod:`autovision.checks.store`."""

    __tablename__ = "dataset_checks"
    __table_args__ = (UniqueConstraint("dataset", "version", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ConsoleUserRow(Base):
    """A password login of the web console (``autovision users create``); see
    :mod:`autovision.console.auth`. ``password_hash`` is an argon2id string."""

    __tablename__ = "console_users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ConsoleSessionRow(Base):
    """A logged-in browser: ``id`` is the SHA-256 of the cookie's token (the token itself is
    never stored), ``csrf`` the token every state-changing request must echo."""

    __tablename__ = "console_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(16))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRow(Base):
    """A background job (first kind: ``train``) run by a worker process; see
    :mod:`autovision.jobs`. ``status``: queued, running, done, failed, interrupted, cancelled."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the worker's machine
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # worker starts (resumes + 1)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class JobEventRow(Base):
    """One progress event of a job, append-only, numbered 1, 2, ... within the job (what the
    console polls or streams with ``after_seq``)."""

    __tablename__ = "job_events"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DriftCheckRow(Base):
    """One run of ``autovision monitor`` (CLI or console): the verdict, the tests and the
    histogram data of its plots, so the console shows the latest without recomputing."""

    __tablename__ = "drift_checks"
    __table_args__ = (Index("ix_drift_checks_name_created", "name", "created_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    verdict: Mapped[str] = mapped_column(String(32))
    samples: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LabelDraftRow(Base):
    """A label a person gave an unlabeled image in the console's labeling queue, waiting
    for "Save as new version" (:mod:`autovision.data.labeling`); ``labels`` empty: skipped."""

    __tablename__ = "label_drafts"
    dataset: Mapped[str] = mapped_column(String(200), primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_version: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    user: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PipelineRunRow(Base):
    """One ``autovision pipeline run`` of a pipeline file (see :mod:`autovision.pipelines`).
    ``status``: running, done, failed, gate_failed, interrupted (killed; resumed by the next
    run); ``card``: the file's ``card:`` block for the model card."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (Index("ix_pipeline_runs_pipeline_created", "pipeline", "created_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    file: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    card: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    trigger: Mapped[str] = mapped_column(String(32), default="cli")
    autovision_version: Mapped[str] = mapped_column(String(32), default="")
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")


class PipelineStageRow(Base):
    """One stage of a pipeline run: its cache key, resolved parameters, inputs, outputs, gate
    result and timing. ``status``: running, done, reused (outputs of ``reused_from``),
    gate_failed, failed, skipped, interrupted; ``state``: what a resume needs (the search
    run of a train stage)."""

    __tablename__ = "pipeline_stages"
    __table_args__ = (Index("ix_pipeline_stages_lookup", "pipeline", "stage", "cache_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id"), index=True)
    pipeline: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    cache_key: Mapped[str] = mapped_column(String(64), default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reused_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite: WAL, foreign keys, a busy timeout; a database server:
    pooled connections checked before use, so a restarted server or a dropped connection
    costs a reconnect, not an error), schema untouched."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def get_engine(url: str, root: str | os.PathLike[str] | None = None) -> Engine:
    """Turn a URL into an engine with the schema at the newest revision (like optuna's
    ``get_storage``): created, or upgraded by :func:`autovision.workspace.schema.ensure`."""
    from autovision.workspace import schema

    engine = make_engine(url)
    schema.ensure(engine, root)
    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
