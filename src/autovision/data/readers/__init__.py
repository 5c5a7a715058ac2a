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
INDEX_FILES = {"csv": "dataset.csv", "jsonl": "dataset.jsonl"}
"""The file a folder written by ``dataset export --format csv|jsonl`` holds at its root."""

__all__ = [
    "FORMATS",
    "INDEX_FILES",
    "READERS",
    "Reader",
    "Record",
    "Scope",
    "check_label",
    "detect_format",
    "get_reader",
    "resolve_source",
]


def get_reader(name: str) -> Reader:
    """The reader for ``folder``, ``csv`` or ``jsonl``."""
    try:
        return READERS[name]()
    except KeyError:
        raise DatasetError(
            f"unknown source format {name!r} (one of {', '.join(FORMATS)})"
        ) from None


def _index_formats(folder: Path) -> list[str]:
    return [fmt for fmt, name in INDEX_FILES.items() if (folder / name).is_file()]


def detect_format(source: str) -> str:
    """``folder`` for a folder, ``csv``/``jsonl`` from the suffix or the first characters.

    A folder with ``dataset.csv`` (or ``dataset.jsonl``) at its root is what ``dataset
    export`` writes: it is that CSV (JSONL), with its splits and labels, not a folder per
    label (whose one "label" would be ``images``). ``--format folder`` still reads it as one.
    """
    lp = local_path(source)
    if lp is None:
        suffix = Path(source.split("?", 1)[0]).suffix.lower()
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
        if source.endswith("/"):
            return "folder"  # an object-store prefix: s3://bucket/images/
        raise DatasetError(
            f"{source}: cannot tell the format of a URL without a .csv or .jsonl suffix "
            "(end a folder with /); pass --format"
        )
    path = Path(lp).expanduser()
    if path.is_dir():
        found = _index_formats(path)
        if len(found) > 1:
            raise DatasetError(
                f"{source}: holds both {' and '.join(INDEX_FILES[f] for f in found)}; "
                "pass --format csv, jsonl or folder"
            )
        return found[0] if found else "folder"
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


def resolve_source(source: str, format: str | None = None) -> tuple[str, str]:
    """``(format, what the reader reads)``: the format given or detected, and for a local
    folder read as ``csv``/``jsonl`` its ``dataset.csv``/``dataset.jsonl`` (an export).

    The file's rows then name images relative to that folder, which is the folder a CSV's
    rows may always name: an export imports without ``--allow-root``.
    """
    fmt = format or detect_format(source)
    lp = local_path(source)
    if fmt in INDEX_FILES and lp is not None and Path(lp).expanduser().is_dir():
        index = Path(lp).expanduser() / INDEX_FILES[fmt]
        if not index.is_file():
            raise DatasetError(
                f"{source}: a folder without {INDEX_FILES[fmt]}; pass the {fmt.upper()} file, "
                "or --format folder for a folder per label"
            )
        return fmt, str(index)
    return fmt, source
