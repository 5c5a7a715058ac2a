"""Readers turn a source (folder, CSV, JSONL; local or fsspec URL) into image records."""

from __future__ import annotations

from pathlib import Path

from autovision.data.readers._base import Reader, Record, Scope, check_label, local_path
from autovision.data.readers.csv import CsvReader
from autovision.data.readers.folder import FolderReader
from autovision.data.readers.jsonl import JsonlReader
from autovision.errors import DatasetError

READERS: dict[str, type[Reader]] = {
    "folder": FolderReader,
    "csv": CsvReader,
    "jsonl": JsonlReader,
}
FORMATS = tuple(READERS)
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}

__all__ = [
    "FORMATS",
    "READERS",
    "Reader",
    "Record",
    "Scope",
    "check_label",
    "detect_format",
    "get_reader",
]


def get_reader(name: str) -> Reader:
    """The reader for ``folder``, ``csv`` or ``jsonl``."""
    try:
        return READERS[name]()
    except KeyError:
        raise DatasetError(
            f"unknown source format {name!r} (one of {', '.join(FORMATS)})"
        ) from None


def detect_format(source: str) -> str:
    """``folder`` for a folder, ``csv``/``jsonl`` from the suffix or the first characters."""
    lp = local_path(source)
    if lp is None:
        suffix = Path(source.split("?", 1)[0]).suffix.lower()
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
        raise DatasetError(
            f"{source}: cannot tell the format of a URL without a .csv or .jsonl suffix; "
            "pass --format"
        )
    path = Path(lp).expanduser()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if not path.is_file():
        raise DatasetError(f"{source}: not a regular file (a device, FIFO or socket)")
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head.strip():
        raise DatasetError(f"{source}: the file is empty")
    if b"\x00" in head:
        raise DatasetError(f"{source}: binary data, not a dataset (a folder, CSV or JSONL file)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{source}: not a dataset (a folder, CSV or JSONL file)") from None
    return "jsonl" if text.lstrip().startswith("{") else "csv"
