"""Stored results of the model-based data checks (issue 14).

Revision ID: 0004_dataset_checks
Revises: 0003_prediction_log
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from autovision.workspace.migrations import _legacy

revision = "0004_dataset_checks"
down_revision = "0003_prediction_log"
branch_labels = None
depends_on = None

TABLES = ("dataset_checks",)


def upgrade() -> None:
    _legacy.create_table(
        "dataset_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dataset", "version", "kind"),
    )
    _legacy.create_index("ix_dataset_checks_dataset", "dataset_checks", ["dataset"])


def downgrade() -> None:
    _legacy.drop_tables("dataset_checks")
