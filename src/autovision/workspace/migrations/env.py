"""Alembic's environment: runs on the connection that :mod:`autovision.workspace.schema`
passes in ``config.attributes`` (inside its lock and transaction), with autovision's own
version table so Optuna's ``alembic_version`` in the same database is left alone."""

from __future__ import annotations

from alembic import context

from autovision.workspace import schema
from autovision.workspace.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run autovision's migrations through autovision.workspace.schema "
        "(`autovision workspace upgrade`), not the alembic command"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=schema.VERSION_TABLE,
    include_object=schema.include_object(connection.dialect.name),
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
