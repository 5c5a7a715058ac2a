"""Data: safe decoding, readers, import, quality checks, duplicates, splits, reports."""
