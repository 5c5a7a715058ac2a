"""Named model versions and aliases with their history, usage records, shadow records
(issue 12). The models of an older workspace are numbered into ``model_versions`` lazily by
:func:`autovision.versions.store._backfill` (it also serves workspaces never migrated).

Revision ID: 0002_model_versions_usage
Revises: 0001_baseline
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from autovision.workspace.migrations import _legacy

revision = "0002_model_versions_usage"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

TABLES = (
    "model_versions",
    "model_aliases",
    "model_alias_events",
    "usage_records",
    "shadow_records",
)


def upgrade() -> None:
    _legacy.create_table(
        "model_versions",
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id"),
        sa.UniqueConstraint("name", "version"),
    )
    _legacy.create_index("ix_model_versions_name", "model_versions", ["name"])
    _legacy.create_table(
        "model_aliases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("name", "alias"),
    )
    _legacy.create_table(
        "model_alias_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index(
        "ix_model_alias_events_name_alias", "model_alias_events", ["name", "alias"]
    )
    _legacy.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index("ix_usage_records_ended_at", "usage_records", ["ended_at"])
    _legacy.create_index("ix_usage_records_kind", "usage_records", ["kind"])
    _legacy.create_index("ix_usage_records_subject", "usage_records", ["subject"])
    _legacy.create_table(
        "shadow_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("champion_id", sa.String(length=64), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("challenger_id", sa.String(length=64), nullable=False),
        sa.Column("challenger_version", sa.Integer(), nullable=True),
        sa.Column("champion_probs", sa.JSON(), nullable=False),
        sa.Column("challenger_probs", sa.JSON(), nullable=False),
        sa.Column("champion_labels", sa.JSON(), nullable=False),
        sa.Column("challenger_labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("challenger_id", "champion_id", "name", "time"):
        _legacy.create_index(f"ix_shadow_records_{column}", "shadow_records", [column])


def downgrade() -> None:
    _legacy.drop_tables(
        "shadow_records", "usage_records", "model_alias_events", "model_aliases", "model_versions"
    )
