"""The web console (issue 15): console users and sessions, background jobs and their
events, stored drift checks, label drafts, and the gallery's indexes on ``items``.

Revision ID: 0005_console_jobs
Revises: 0004_dataset_checks
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovision.workspace.migrations import _legacy

revision = "0005_console_jobs"
down_revision = "0004_dataset_checks"
branch_labels = None
depends_on = None

TABLES = ("console_users", "console_sessions", "jobs", "job_events", "drift_checks", "label_drafts")


def upgrade() -> None:
    _legacy.create_index("ix_items_version_split_item", "items", ["version_id", "split", "item_id"])
    if op.get_bind().dialect.name == "sqlite":  # PostgreSQL cannot index a json column
        _legacy.create_index(
            "ix_items_version_labels_item", "items", ["version_id", "labels", "item_id"]
        )
    _legacy.create_table(
        "console_users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    _legacy.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    _legacy.create_index("ix_console_sessions_user", "console_sessions", ["user"])
    _legacy.create_table(
        "jobs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # ``host`` came a commit after ``jobs`` did (19da5b2).
    _legacy.add_column("jobs", sa.Column("host", sa.String(length=255), nullable=True))
    _legacy.create_index("ix_jobs_kind", "jobs", ["kind"])
    _legacy.create_index("ix_jobs_status", "jobs", ["status"])
    _legacy.create_table(
        "job_events",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )
    _legacy.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index("ix_drift_checks_model_id", "drift_checks", ["model_id"])
    _legacy.create_index("ix_drift_checks_name_created", "drift_checks", ["name", "created_at"])
    _legacy.create_table(
        "label_drafts",
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "item_id"),
    )


def downgrade() -> None:
    _legacy.drop_tables(
        "label_drafts", "drift_checks", "job_events", "jobs", "console_sessions", "console_users"
    )
    existing = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("items")}
    for name in ("ix_items_version_labels_item", "ix_items_version_split_item"):
        if name in existing:
            op.drop_index(name, table_name="items")
