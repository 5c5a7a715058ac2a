"""Revision files, oldest first: ``NNNN_what.py`` (see docs/schema-migrations.md)."""
