"""Import a source into a new dataset version: read, check, store, analyse, split.

Files are processed by a pool of worker processes in chunks: each worker reads a file,
hashes it, decodes it safely (reduced JPEG draft), computes the quality stats and the
perceptual hash and writes the bytes to the blob store, and sends back only a small
result. The parent never holds more than one small record per image, so memory stays
bounded however large the source is.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autovision.data import archive, duplicates, quality
from autovision.data import problems as P
from autovision.data.dataset import SPLITS, DatasetVersion, Item
from autovision.data.decode import DEFAULT_MAX_PIXELS, decode_image
from autovision.data.fetch import DEFAULT_MAX_FILE_MB, DEFAULT_TIMEOUT_S, ReadRefused, read_uri
from autovision.data.problems import Problem
from autovision.data.readers import Scope, get_reader, resolve_source
from autovision.data.readers._base import Record, is_url
from autovision.data.report import checks_summary, dataset_report
from autovision.data.split import SplitEntry, assign_splits, parse_fractions
from autovision.errors import DatasetError, ImageDecodeError
from autovision.security.audit import audited

ProgressFn = Callable[[int, int], None]

# JPEGs decode at the smallest 1/2^k scale that keeps both sides at least this size. Smaller
# drafts are faster but move perceptual hashes of resized copies by several bits.
DRAFT_SIZE = (256, 256)
SERIAL_BELOW = 64  # fewer files than this are processed in-process (no pool start-up)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ImportFailed(DatasetError):
    """An import that made no version; ``problems`` says why, row by row."""

    def __init__(self, message: str, problems: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class ImportResult:
    """The new version and every problem met on the way."""

    version: DatasetVersion
    problems: list[dict[str, Any]] = field(default_factory=list)
    split_conflicts: list[dict[str, Any]] = field(default_factory=list)
    previous_version: int | None = None
    kept_splits: int = 0
    reassigned: int = 0
    checks_summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The import JSON: dataset, version, images, labels, splits, problems,
        ``checks_summary`` (:func:`~autovision.data.report.checks_summary` of the new
        version); and for a new version of an existing dataset ``previous``: its version, how
        many images kept their split, how many ML_USE moved."""
        ds = self.version
        counts = ds.split_counts()
        out = {
            "dataset": ds.name,
            "version": ds.version,
            "images": len(ds.items),
            "labels": ds.label_counts(),
            "splits": {s: counts.get(s, 0) for s in SPLITS},
            "problems": [_problem_json(p) for p in self.problems],
            "checks_summary": self.checks_summary,
        }
        if self.previous_version is not None:
            out["previous"] = {
                "version": self.previous_version,
                "kept_splits": self.kept_splits,
                "reassigned_by_ml_use": self.reassigned,
            }
        return out


def _problem_json(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": p["source"],
        "line": p.get("line"),
        "reason": p["reason"],
        "message": p["message"],
    }


def check_name(name: str) -> str:
    """Dataset names: letters, digits, ``.``, ``_``, ``-``; up to 100 characters."""
    if not _NAME.match(name or ""):
        raise DatasetError(
            f"invalid dataset name {name!r}: use letters, digits, '.', '_' or '-' "
            "(up to 100 characters, starting with a letter or digit)"
        )
    return name


# ---- worker side -------------------------------------------------------------------------

_STORE: Any = None
_MAX_PIXELS = DEFAULT_MAX_PIXELS
_MAX_BYTES = int(DEFAULT_MAX_FILE_MB * 1e6)
_TIMEOUT = DEFAULT_TIMEOUT_S


def _init_worker(blob_url: str, max_pixels: int, max_bytes: int, timeout: float) -> None:
    global _STORE, _MAX_PIXELS, _MAX_BYTES, _TIMEOUT
    from autovision.workspace.blobs import BlobStore

    _STORE = BlobStore(blob_url)
    _MAX_PIXELS, _MAX_BYTES, _TIMEOUT = max_pixels, max_bytes, timeout


def _process(task: tuple[int, str]) -> tuple[int, dict[str, Any] | None, tuple[str, str] | None]:
    """Read, hash, decode, analyse and store one file; never raises."""
    index, uri = task
    try:
        data = read_uri(uri, _MAX_BYTES, _TIMEOUT)
    except ReadRefused as exc:
        return index, None, (exc.reason, exc.message)
    except FileNotFoundError:
        return index, None, (P.MISSING_FILE, "no such file")
    except IsADirectoryError:
        return index, None, (P.MISSING_FILE, "is a folder, not a file")
    except Exception as exc:  # noqa: BLE001 - any I/O failure is a problem entry
        return index, None, (P.UNREADABLE, f"cannot read the file: {exc}")
    if not data:
        return index, None, (P.EMPTY_FILE, "file is empty")
    sha = hashlib.sha256(data).hexdigest()
    try:
        decoded = decode_image(data, max_pixels=_MAX_PIXELS, draft=DRAFT_SIZE)
        small = quality.thumbnail(decoded.image)
        stats = dict(quality.analyze(small))
        phash = duplicates.perceptual_hash(small)
    except ImageDecodeError as exc:
        return index, None, (exc.reason, exc.message)
    except Exception as exc:  # noqa: BLE001
        return index, None, (P.UNREADABLE, f"cannot analyse the image: {exc}")
    stats.update(width=decoded.width, height=decoded.height)
    _STORE.put(data, sha)
    info = {
        "sha256": sha,
        "width": decoded.width,
        "height": decoded.height,
        "format": decoded.format,
        "phash": phash,
        "stats": stats,
    }
    return index, info, None


def _run(
    tasks: list[tuple[int, str]],
    *,
    workers: int,
    init: tuple[str, int, int, float],
) -> Iterable[tuple[int, dict[str, Any] | None, tuple[str, str] | None]]:
    if workers <= 1 or len(tasks) < SERIAL_BELOW:
        _init_worker(*init)
        yield from map(_process, tasks)
        return
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(32, len(tasks) // (workers * 8)))
    with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
        yield from pool.imap(_process, tasks, chunksize=chunk)


# ---- parent side -------------------------------------------------------------------------


@audited(
    "dataset.import",
    args=("name", "source", "format", "strict"),
    result=lambda r: {"version": r.version.ref, "images": len(r.version.items)},
)
def import_dataset(
    ws: Any,
    name: str,
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    multi_label: bool | None = None,
    split: str | Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    strict: bool = False,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allow_roots: Sequence[str | os.PathLike[str]] = (),
    allow_urls: bool = False,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    timeout: float = DEFAULT_TIMEOUT_S,
    archive_limits: archive.ArchiveLimits | None = None,
    keep_splits: bool = True,
    shown: str | None = None,
) -> ImportResult:
    """Import ``source`` (folder, CSV, JSONL, or a zip/tar of those; local or URL) as a new
    version of ``name``.

    Rows may name local files inside the file's folder or ``allow_roots`` only, remote URLs
    only with ``allow_urls`` (never private addresses); only regular files of at most
    ``max_file_mb`` are read. Bad inputs become problem entries; with ``strict`` any problem
    raises :class:`ImportFailed` and makes no version, as does a source with no good image.
    A new version of an existing dataset keeps, with ``keep_splits``, the id and split of
    every image whose content was in the latest version (ML_USE of its row still wins).
    ``shown`` is the name the source is recorded under when its path means nothing to the
    user (an uploaded file saved to a temporary folder): the version's source, its images'
    sources (``SHOWN:path/inside``) and the messages name it instead of that folder.
    """
    check_name(name)
    source = os.fspath(source)
    fractions = parse_fractions(split)
    if max_file_mb <= 0:
        raise DatasetError(f"the file size limit must be positive, got {max_file_mb} MB")
    roots = tuple(os.fspath(r) for r in allow_roots)
    for root in roots:
        if not os.path.isdir(os.path.expanduser(root)):
            raise DatasetError(f"--allow-root {root}: not a folder")
    scope = Scope(roots=roots, allow_urls=allow_urls)
    opts = dict(
        format=format,
        multi_label=multi_label,
        fractions=fractions,
        seed=seed,
        strict=strict,
        keep_splits=keep_splits,
        progress=progress,
        workers=workers,
        init=(ws.blobs.url, max_pixels, int(max_file_mb * 1e6), timeout),
    )
    if not (archive.is_archive(source) and not is_url(source)):
        if shown is None or is_url(source):
            return _import(ws, name, source, scope=scope, **opts)
        local = os.path.abspath(os.path.expanduser(source))
        folder = local if os.path.isdir(local) else os.path.dirname(local)
        try:
            return _import(ws, name, local, scope=scope, shown=shown, unpacked=folder, **opts)
        except DatasetError as exc:
            if isinstance(exc, ImportFailed):
                raise
            raise DatasetError(_inside(str(exc).replace(local, shown), folder, shown)) from None
    tmp_parent = os.path.join(ws.root, "tmp")
    os.makedirs(tmp_parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="import-", dir=tmp_parent)
    try:
        found = archive.extract_archive(source, tmp, archive_limits)
        target = archive.import_target(Path(tmp))
        inner = Scope(roots=(tmp, *roots), allow_urls=allow_urls)
        return _import(
            ws,
            name,
            str(target),
            scope=inner,
            shown=shown or source,
            unpacked=tmp,
            found=found,
            **opts,
        )
    except ImportFailed:
        raise
    except DatasetError as exc:
        raise DatasetError(_inside(str(exc), tmp, shown or source)) from None
    finally:
        archive.remove(Path(tmp))


def _import(
    ws: Any,
    name: str,
    source: str,
    *,
    format: str | None,
    multi_label: bool | None,
    fractions: tuple[float, float, float],
    seed: int,
    strict: bool,
    keep_splits: bool,
    progress: ProgressFn | None,
    workers: int | None,
    init: tuple[str, int, int, float],
    scope: Scope,
    shown: str | None = None,
    unpacked: str | None = None,
    found: Sequence[Problem] = (),
) -> ImportResult:
    """The import of a folder/CSV/JSONL ``source``; ``shown`` names it in reports when it was
    ``unpacked`` from an archive (whose refused entries are ``found``)."""
    fmt, source = resolve_source(source, format)
    reader = get_reader(fmt)

    records: list[Record] = []
    problems: list[Problem] = list(found)
    for entry in reader.read(source, scope=scope):
        if isinstance(entry, Problem):
            problems.append(entry)
        elif multi_label is False and len(entry.labels) > 1:
            problems.append(
                Problem(
                    entry.source,
                    P.BAD_LABEL,
                    f"{_where(entry)}{len(entry.labels)} labels in a single-label import "
                    "(import with --multi-label)",
                    entry.line,
                )
            )
        else:
            records.append(entry)

    total = len(records)
    if progress is not None:
        progress(0, total)
    infos: list[dict[str, Any] | None] = [None] * total
    tasks = [(i, r.uri) for i, r in enumerate(records)]
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    results = _run(tasks, workers=n_workers, init=init)
    for done, (index, info, problem) in enumerate(results, start=1):
        if problem is not None:
            rec = records[index]
            reason, message = problem
            problems.append(Problem(rec.source, reason, f"{_where(rec)}{message}", rec.line))
        else:
            infos[index] = info
        if progress is not None:
            progress(done, total)

    good = [(rec, info) for rec, info in zip(records, infos, strict=True) if info is not None]
    if unpacked is not None:
        source = shown or source
        good = [(replace(rec, source=_inside(rec.source, unpacked, source)), i) for rec, i in good]
        problems = [
            replace(
                p,
                source=_inside(p.source, unpacked, source),
                message=_inside(p.message, unpacked, source),
            )
            for p in problems
        ]
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.source))
    if strict and problems:
        raise _failed(source, problems, strict=True)
    if not good:
        raise _failed(source, problems, strict=False)

    if multi_label is None:
        multi_label = any(len(r.labels) > 1 or r.multi_label for r, _ in good)
    previous = _latest(ws, name) if keep_splits else None
    matched = _match_previous(previous, good)
    first_id = ws.reserve_item_ids(name, len(good) - len(matched))
    fresh = iter(range(first_id, first_id + len(good) - len(matched)))
    items = [
        Item(
            id=matched[k].id if k in matched else next(fresh),
            sha256=info["sha256"],
            source=rec.source,
            labels=rec.labels,
            split="train",
            width=info["width"],
            height=info["height"],
            format=info["format"],
            phash=info["phash"] or "",
            metadata=dict(rec.metadata),
            stats=info["stats"],
        )
        for k, (rec, info) in enumerate(good)
    ]
    # Old items the source no longer holds still pin their duplicates to their split.
    kept_ids = {it.id for it in matched.values()}
    gone = [it for it in previous.items if it.id not in kept_ids] if previous else []
    entries = [
        SplitEntry(it.id, it.labels, rec.ml_use, _split_of(matched.get(k)))
        for k, (it, (rec, _)) in enumerate(zip(items, good, strict=True))
    ] + [SplitEntry(it.id, it.labels, None, _split_of(it)) for it in gone]
    result = assign_splits(
        entries,
        fractions=fractions,
        seed=seed,
        groups=duplicates.duplicate_groups([*items, *gone]),
    )
    items = [replace(it, split=result.splits[it.id]) for it in items]
    kept = sum(1 for it in matched.values() if it.id not in result.reassigned)
    problem_dicts = [_problem_json(p.to_dict()) for p in problems]
    conflicts = [{"ids": c["ids"], "message": c["message"]} for c in result.conflicts]
    version = ws.create_version(
        name,
        items,
        multi_label=bool(multi_label),
        source=source,
        note=f"imported {len(items)} images from {source} ({fmt})"
        + (
            f"; {kept} images kept their split of @{previous.version}"
            + (f", {len(result.reassigned)} moved by ML_USE" if result.reassigned else "")
            if previous
            else ""
        )
        + (f"; {len(conflicts)} duplicate groups with conflicting splits" if conflicts else ""),
        parent_version=previous.version if previous else None,
        params={
            "format": fmt,
            "split": list(fractions),
            "seed": seed,
            "strict": strict,
            "split_conflicts": conflicts,
            "splits_from": previous.version if previous else None,
            "splits_kept": kept,
            "splits_reassigned": result.reassigned,
        },
        problems=problem_dicts,
    )
    return ImportResult(
        version=version,
        problems=problem_dicts,
        split_conflicts=conflicts,
        previous_version=previous.version if previous else None,
        kept_splits=kept,
        reassigned=len(result.reassigned),
        # The rule-based checks once, on the stored version: what `dataset show` will list.
        checks_summary=checks_summary(dataset_report(version)),
    )


def _latest(ws: Any, name: str) -> DatasetVersion | None:
    """The newest version of ``name``, or ``None`` for a new dataset."""
    if name not in ws.dataset_names() or not ws.versions(name):
        return None
    return ws.dataset(name)


def _split_of(item: Item | None) -> str | None:
    return item.split if item is not None and item.split in SPLITS else None


def _match_previous(
    previous: DatasetVersion | None, good: Sequence[tuple[Record, dict[str, Any]]]
) -> dict[int, Item]:
    """Row index -> the previous version's item with the same content (sha256), each old item
    taken once: the same source first, then in order. Matched rows keep that item's id."""
    if previous is None:
        return {}
    by_sha: dict[str, list[Item]] = {}
    for it in previous.items:
        by_sha.setdefault(it.sha256, []).append(it)
    out: dict[int, Item] = {}
    taken: set[int] = set()
    for same_source in (True, False):
        for k, (rec, info) in enumerate(good):
            if k in out:
                continue
            for it in by_sha.get(info["sha256"], ()):
                if it.id not in taken and (not same_source or it.source == rec.source):
                    out[k] = it
                    taken.add(it.id)
                    break
    return out


def _inside(text: str, unpacked: str, archive_name: str) -> str:
    """Paths in the extraction folder as ``ARCHIVE:path/inside`` (the folder is removed)."""
    real = os.path.realpath(unpacked)
    for prefix in {real, unpacked}:
        text = text.replace(prefix + os.sep, f"{archive_name}:").replace(prefix, archive_name)
    return text


def _where(rec: Record) -> str:
    return f"line {rec.line}: " if rec.line is not None else ""


def _failed(source: str, problems: list[Problem], *, strict: bool) -> ImportFailed:
    first = problems[0] if problems else None
    detail = f"; first: {first.source}: {first.reason}: {first.message}" if first else ""
    if strict:
        msg = f"{source}: strict import refused, {len(problems)} problem(s){detail}"
    else:
        msg = f"{source}: nothing imported, {len(problems)} problem(s){detail}"
    return ImportFailed(msg, [_problem_json(p.to_dict()) for p in problems])
