"""CSV reader, the cloud AutoML layout: ``[ML_USE,]IMAGE_PATH[,LABEL,...]`` per row.

ML_USE (TRAIN/TRAINING, VALIDATION, TEST, UNASSIGNED, any case) is optional; several labels
make a multi-label row; no label leaves the image unlabeled; a cell ``meta:KEY=VALUE`` after
the path is metadata. Empty cells are ignored (trailing commas are common) but a cell of only
spaces is an empty label. A first row whose first cell is a column name (``ml_use``,
``image_path``, ``path``...) is a header. One row per line: quoted fields may hold commas,
not line breaks.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from autovision.data.problems import BAD_LABEL, BAD_ROW, Problem
from autovision.data.readers._base import (
    ML_USE,
    Reader,
    Record,
    Scope,
    bad_text,
    check_label,
    read_text,
    resolve_entry,
    source_folder,
    text_lines,
)
from autovision.errors import DatasetError

HEADER_CELLS = {"ml_use", "image_path", "path", "image", "file", "filename", "uri", "gcs_file_path"}
META_PREFIX = "meta:"


class CsvReader(Reader):
    name = "csv"

    def read(self, source: str, *, scope: Scope | None = None) -> Iterator[Record | Problem]:
        text = read_text(source, kind="CSV")
        base = source_folder(source)
        rows = 0
        for line, raw in text_lines(text):
            if not raw.strip():
                continue
            rows += 1
            try:
                cells = next(csv.reader([raw], strict=True))
            except csv.Error as exc:
                yield Problem(source, BAD_ROW, f"line {line}: malformed CSV: {exc}", line)
                continue
            if rows == 1 and cells and cells[0].strip().lower() in HEADER_CELLS:
                continue
            yield parse_row(cells, source=source, base=base, line=line, scope=scope)
        if rows == 0:
            raise DatasetError(f"{source}: the CSV file has no rows")


def parse_row(
    cells: list[str], *, source: str, base: str, line: int, scope: Scope | None = None
) -> Record | Problem:
    """One CSV row to a record, or the problem that stops it."""
    if any(bad_text(c) for c in cells):
        return Problem(source, BAD_ROW, f"line {line}: not valid UTF-8 text", line)
    ml_use = None
    if cells and cells[0].strip().lower() in ML_USE:
        ml_use = ML_USE[cells[0].strip().lower()]
        cells = cells[1:]
    if not cells or not cells[0].strip():
        return Problem(source, BAD_ROW, f"line {line}: no image path", line)
    path, rest = cells[0].strip(), cells[1:]
    labels: list[str] = []
    metadata: dict[str, str] = {}
    for cell in rest:
        if cell == "":
            continue
        if cell.strip().lower().startswith(META_PREFIX):
            key, sep, value = cell.strip()[len(META_PREFIX) :].partition("=")
            if not sep or not key.strip():
                why = f"line {line}: metadata cell {cell!r} is not meta:KEY=VALUE"
                return Problem(source, BAD_ROW, why, line)
            metadata[key.strip()] = value.strip()
            continue
        label, why = check_label(cell)
        if label is None:
            return Problem(path, BAD_LABEL, f"line {line}: {why}", line)
        if label not in labels:
            labels.append(label)
    uri = resolve_entry(path, base, source=path, line=line, scope=scope)
    if isinstance(uri, Problem):
        return uri
    return Record(
        source=path,
        uri=uri,
        line=line,
        labels=tuple(sorted(labels)),
        ml_use=ml_use,
        metadata=metadata,
    )
