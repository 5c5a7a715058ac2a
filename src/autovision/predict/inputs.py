"""Input expansion: folders, globs, CSV and JSONL lists, single files and URLs -> sources.

Sources stream out one at a time (a folder of a million images is never listed in memory at
once, except for the sorted names of one directory). Each is a local path or an fsspec URL,
written so that it can be opened again: entries of a list file are resolved against the
folder of that file. A list row that names no image yields a :class:`Problem` instead.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import posixpath
from collections.abc import Iterable, Iterator

from autovision.data.problems import BAD_ROW, MISSING_FILE, UNREADABLE, Problem

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ico"}
)
CSV_EXTENSIONS = frozenset({".csv"})
JSONL_EXTENSIONS = frozenset({".jsonl", ".ndjson"})
# Keys naming the image in a JSONL object, in order of preference (Vertex batch input first).
JSONL_KEYS = ("content", "imageGcsUri", "path", "image_path", "imageUri", "uri", "image", "file")
# Header cells (any case) naming the image column of a CSV.
CSV_COLUMNS = frozenset(
    {"path", "imagegcsuri", "image_path", "imageuri", "image_uri", "gcs_file_path", "content"}
    | {"uri", "image", "file", "filename"}
)
ML_USES = frozenset({"train", "training", "validation", "validate", "test", "unassigned"})

Entry = str | Problem
Inputs = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def is_url(path: str) -> bool:
    """``scheme://...`` with a scheme of two or more letters (not a Windows drive)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def local_path(path: str) -> str | None:
    """The local path of a plain path or ``file://`` URL; ``None`` for a remote URL."""
    if path.startswith("file://"):
        return path[len("file://") :]
    return None if is_url(path) else path


def _has_magic(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _ext(path: str) -> str:
    return os.path.splitext(path.rstrip("/"))[1].lower()


def expand_inputs(inputs: Inputs) -> Iterator[Entry]:
    """Yield the sources named by ``inputs``, in a stable order.

    - a folder: its images, recursively, sorted by path (hidden files and folders skipped);
    - a glob (``imgs/**/*.jpg``): every file it matches, sorted;
    - a ``.csv``: the first column, or the column headed ``path``/``imageGcsUri``/...; a
      first cell of ML_USE (TRAIN, TEST...) is skipped as in the cloud AutoML layout;
    - a ``.jsonl``: the ``content``, ``imageGcsUri`` or ``path`` key of each object (or a
      bare JSON string; ``{"instance": {...}}`` lines of an earlier output work too);
    - anything else: one image, a local path or an fsspec URL (``s3://``, ``gs://``...).
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    for item in inputs:
        yield from _expand_one(os.fspath(item))


def count_sources(inputs: Inputs) -> int:
    """How many entries :func:`expand_inputs` yields (one cheap listing pass)."""
    return sum(1 for _ in expand_inputs(inputs))


def _expand_one(item: str) -> Iterator[Entry]:
    local = local_path(item)
    if local is None:
        yield from _expand_url(item)
        return
    path = os.path.expanduser(local)
    if _ext(path) in CSV_EXTENSIONS | JSONL_EXTENSIONS and not os.path.isdir(path):
        yield from _expand_list(item, path)
    elif os.path.isdir(path):
        yield from _walk(path)
    elif _has_magic(path) and not os.path.exists(path):
        matches = sorted(glob.iglob(path, recursive=True))
        yield from (m for m in matches if os.path.isfile(m))
    else:
        yield path


def _walk(root: str) -> Iterator[str]:
    with os.scandir(root) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from _walk(entry.path)
        elif _ext(entry.name) in IMAGE_EXTENSIONS and entry.is_file():
            yield entry.path


def _expand_url(url: str) -> Iterator[Entry]:
    from autovision.workspace.storage import filesystem, storage_error, translate_errors

    fs, path = filesystem(url)
    if _ext(path) in CSV_EXTENSIONS | JSONL_EXTENSIONS:
        yield from _expand_list(url, None)
        return
    with translate_errors(url):  # a missing bucket or no credentials: one clear error
        if _has_magic(path):
            found = [fs.unstrip_protocol(p) for p in sorted(fs.glob(path)) if fs.isfile(p)]
        elif fs.isdir(path):
            found = [fs.unstrip_protocol(p) for p in sorted(fs.find(path))]
            found = [p for p in found if _ext(p) in IMAGE_EXTENSIONS]
        else:
            try:
                fs.info(path)
            except FileNotFoundError as exc:  # a missing image: its error line says so
                err = storage_error(url, exc)  # ... but a missing bucket stops the run
                if err is not None:
                    raise err from None
            found = [url]
    yield from found


def _read_text(source: str, local: str | None) -> str | Problem:
    try:
        if local is not None:
            with open(local, "rb") as fh:
                data = fh.read()
        else:
            from autovision.workspace.storage import open_url

            with open_url(source) as fh:
                data = fh.read()
    except FileNotFoundError:
        return Problem(source, MISSING_FILE, f"{source}: no such file")
    except OSError as exc:
        return Problem(source, UNREADABLE, f"{source}: cannot read the list file: {exc}")
    return data.decode("utf-8-sig", errors="replace")


def _resolver(source: str, local: str | None):
    """Resolve an entry of a list file against the list file's folder."""
    if local is not None:
        base = os.path.dirname(local)

        def resolve(entry: str) -> str:
            if is_url(entry):
                return local_path(entry) or entry
            entry = os.path.expanduser(entry)
            return entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))

        return resolve
    scheme, _, rest = source.partition("://")
    base_path = posixpath.dirname(rest)

    def resolve_remote(entry: str) -> str:
        if is_url(entry) or entry.startswith("/"):
            return entry
        return f"{scheme}://{posixpath.normpath(posixpath.join(base_path, entry))}"

    return resolve_remote


def _expand_list(source: str, local: str | None) -> Iterator[Entry]:
    text = _read_text(source, local)
    if isinstance(text, Problem):
        yield text
        return
    resolve = _resolver(source, local)
    rows = _csv_rows(source, text) if _ext(source) in CSV_EXTENSIONS else _jsonl_rows(source, text)
    for row in rows:
        yield row if isinstance(row, Problem) else resolve(row)


def _csv_rows(source: str, text: str) -> Iterator[Entry]:
    column: int | None = None
    first = True
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            cells = [c.strip() for c in next(csv.reader([raw], strict=True))]
        except csv.Error as exc:
            yield Problem(f"{source}:{line}", BAD_ROW, f"line {line}: malformed CSV: {exc}", line)
            continue
        if first:
            first = False
            named = [i for i, c in enumerate(cells) if c.lower() in CSV_COLUMNS]
            if named:
                column = named[0]
                continue
            if cells and cells[0].lower() == "ml_use":
                column = 1
                continue
        if column is not None:
            cell = cells[column] if column < len(cells) else ""
        elif len(cells) > 1 and cells[0].lower() in ML_USES:
            cell = cells[1]
        else:
            cell = cells[0] if cells else ""
        if not cell:
            yield Problem(f"{source}:{line}", BAD_ROW, f"line {line}: no image path", line)
        else:
            yield cell


def _jsonl_rows(source: str, text: str) -> Iterator[Entry]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source}:{line}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Problem(where, BAD_ROW, f"line {line}: invalid JSON: {exc.msg}", line)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("instance"), dict):
            obj = obj["instance"]
        if isinstance(obj, str) and obj:
            yield obj
            continue
        value = next(
            (obj[k] for k in JSONL_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), str)),
            "",
        )
        if value:
            yield value
        else:
            keys = ", ".join(JSONL_KEYS[:3])
            yield Problem(where, BAD_ROW, f"line {line}: no image path (expected {keys})", line)
