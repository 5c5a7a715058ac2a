"""Helpers of the revisions up to ``0005``: databases made before migrations (by
``create_all`` at whatever commit) may already hold some of their tables, so these create a
table or index only when it is missing. Later revisions use plain ``op.*``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def create_table(name: str, *elements: Any) -> None:
    if not has_table(name):
        op.create_table(name, *elements)


def create_index(name: str, table: str, columns: list[str], *, unique: bool = False) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def add_column(table: str, column: sa.Column) -> None:
    if column.name not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)


def drop_tables(*names: str) -> None:
    """Drop tables (their indexes go with them), children first."""
    for name in names:
        if has_table(name):
            op.drop_table(name)
