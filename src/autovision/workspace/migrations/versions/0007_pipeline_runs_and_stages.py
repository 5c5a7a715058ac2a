"""Pipeline runs and their stage records (issue 18).

Revision ID: 0007_pipeline_runs_and_stages
Revises: 0006_relative_paths
Create Date: 2026-12-02 12:52:04.290791
"""

from __future__ import annotations

import sqlalchemy as sa

from autovision.workspace.migrations import _legacy

revision = "0007_pipeline_runs_and_stages"
down_revision = "0006_relative_paths"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _legacy.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("pipeline", sa.String(length=200), nullable=False),
        sa.Column("file", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("autovision_version", sa.String(length=32), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index(
        "ix_pipeline_runs_pipeline_created", "pipeline_runs", ["pipeline", "created_at"]
    )
    _legacy.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"])

    _legacy.create_table(
        "pipeline_stages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("pipeline", sa.String(length=200), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cache_key", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("gate", sa.JSON(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("reused_from", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["pipeline_runs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    _legacy.create_index(
        "ix_pipeline_stages_lookup", "pipeline_stages", ["pipeline", "stage", "cache_key"]
    )
    _legacy.create_index("ix_pipeline_stages_run_id", "pipeline_stages", ["run_id"])


def downgrade() -> None:
    _legacy.drop_tables("pipeline_stages", "pipeline_runs")
