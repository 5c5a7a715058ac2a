"""Alembic migrations of the workspace database (``env.py``, ``versions/``); run them with
:mod:`autovision.workspace.schema`, never with an ``alembic.ini``."""
