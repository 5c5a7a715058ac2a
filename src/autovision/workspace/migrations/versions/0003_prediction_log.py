"""The prediction log and per-model settings (issue 13: monitoring, review queue).

Revision ID: 0003_prediction_log
Revises: 0002_model_versions_usage
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from autovision.workspace.migrations import _legacy

revision = "0003_prediction_log"
down_revision = "0002_model_versions_usage"
branch_labels = None
depends_on = None

TABLES = ("prediction_log", "model_settings")


def upgrade() -> None:
    _legacy.create_table(
        "prediction_log",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("route", sa.String(length=32), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("top_label", sa.String(length=200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("review_status", sa.String(length=16), nullable=True),
        sa.Column("review_labels", sa.JSON(), nullable=True),
        sa.Column("reviewer", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("feedback", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("image_sha256", "model_id", "name", "request_id", "review_status", "time"):
        _legacy.create_index(f"ix_prediction_log_{column}", "prediction_log", [column])
    _legacy.create_index("ix_prediction_log_name_time", "prediction_log", ["name", "time"])
    _legacy.create_table(
        "model_settings",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", "key"),
    )


def downgrade() -> None:
    _legacy.drop_tables("model_settings", "prediction_log")
