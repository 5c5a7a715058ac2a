"""Safe extraction of zip and tar imports (the console uploads zips).

Entries with ``..``, absolute paths, links, devices or FIFOs are refused one by one (a problem
each); the entry count, the total uncompressed size and the compression ratio (per entry and
overall: zip bombs) are checked from the headers and again while extracting, since headers lie.
Tar members also pass Python's ``tarfile`` data filter.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from autovision.data import problems as P
from autovision.data.problems import Problem
from autovision.errors import DatasetError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
RATIO_FLOOR = 1 << 20  # ratios are not judged below 1 MiB (small files compress well)
SKIPPED = ("__MACOSX",)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may unpack to."""

    max_total_bytes: int = 2 * 1024**3
    max_entries: int = 100_000
    max_ratio: float = 100.0


def is_archive(source: str) -> bool:
    """True for a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (or .bz2/.xz) file name."""
    return source.lower().endswith(ARCHIVE_SUFFIXES)


def _entry_problem(archive: str, name: str, reason: str, why: str) -> Problem:
    return Problem(f"{archive}:{name}", reason, f"archive entry {name!r}: {why}")


def _safe_name(name: str) -> PurePosixPath | str:
    """The relative path of an entry, or why it may not be extracted."""
    if "\x00" in name:
        return "a NUL in the name"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "an absolute path"
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "'..' in the path"
    if not parts:
        return "an empty name"
    return PurePosixPath(*parts)


class _Budget:
    """Counts bytes written against the total and overall-ratio limits."""

    def __init__(self, archive: str, limits: ArchiveLimits, compressed: int) -> None:
        self.archive, self.limits, self.compressed = archive, limits, max(compressed, 1)
        self.total = 0

    def add(self, n: int, compressed_so_far: int | None = None) -> None:
        self.total += n
        lim = self.limits
        if self.total > lim.max_total_bytes:
            raise DatasetError(
                f"{self.archive}: unpacks to more than {lim.max_total_bytes} bytes; refused"
            )
        seen = max(compressed_so_far or self.compressed, 1)
        if self.total > RATIO_FLOOR and self.total > lim.max_ratio * seen:
            raise DatasetError(
                f"{self.archive}: unpacks to over {lim.max_ratio:g} times its compressed size "
                "(a zip bomb?); refused"
            )


class _EntryTooLarge(Exception):
    pass


def _copy(src: IO[bytes], dest: Path, budget: _Budget, entry_cap: float, tell=None) -> None:
    """Stream one entry to ``dest``, checking the per-entry ratio and the budget as it goes."""
    written = 0
    try:
        with open(dest, "xb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max(entry_cap, RATIO_FLOOR):
                    raise _EntryTooLarge
                budget.add(len(chunk), tell() if tell else None)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def extract_archive(
    source: str, dest: str | Path, limits: ArchiveLimits | None = None
) -> list[Problem]:
    """Extract ``source`` into the empty folder ``dest``; the refused entries as problems."""
    limits = limits or ArchiveLimits()
    dest = Path(dest)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DatasetError(f"{source}: no such archive file")
    if source.lower().endswith(".zip"):
        if not zipfile.is_zipfile(path):
            raise DatasetError(f"{source}: not a zip file")
        return _extract_zip(source, path, dest, limits)
    try:
        return _extract_tar(source, path, dest, limits)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{source}: not a readable tar file: {exc}") from None


def _place(dest: Path, rel: PurePosixPath) -> Path:
    target = dest.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.parent.resolve().is_relative_to(dest.resolve()):
        raise _Refused("its folder leads outside the archive")
    return target


class _Refused(Exception):
    pass


def _extract_zip(source: str, path: Path, dest: Path, limits: ArchiveLimits) -> list[Problem]:
    problems: list[Problem] = []
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise DatasetError(f"{source}: {len(infos)} entries, over {limits.max_entries}")
        declared = sum(i.file_size for i in infos)
        budget = _Budget(source, limits, path.stat().st_size)
        if declared > limits.max_total_bytes:
            raise DatasetError(
                f"{source}: declares {declared} bytes, over {limits.max_total_bytes}; refused"
            )
        if declared > RATIO_FLOOR and declared > limits.max_ratio * budget.compressed:
            raise DatasetError(
                f"{source}: declares over {limits.max_ratio:g} times its compressed size "
                "(a zip bomb?); refused"
            )
        for info in infos:
            name = info.filename

            def refuse(reason: str, why: str, name: str = name) -> None:
                problems.append(_entry_problem(source, name, reason, why))

            mode = info.external_attr >> 16
            rel = _file_entry(
                name,
                dest,
                refuse,
                link=stat.S_ISLNK(mode),
                directory=info.is_dir(),
                regular=stat.S_IFMT(mode) in (0, stat.S_IFREG),
            )
            if rel is None:
                continue
            cap = limits.max_ratio * max(info.compress_size, 1)
            if info.file_size > max(cap, RATIO_FLOOR):
                refuse(P.FILE_TOO_LARGE, _ratio_msg(limits))
                continue
            try:
                target = _place(dest, rel)
                with zf.open(info) as src:
                    _copy(src, target, budget, cap)
            except _EntryTooLarge:
                refuse(P.FILE_TOO_LARGE, _ratio_msg(limits))
            except _Refused as exc:
                refuse(P.PATH_NOT_ALLOWED, f"{exc}; not extracted")
            except FileExistsError:
                refuse(P.BAD_ROW, "a second entry of that name; not extracted")
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                refuse(P.UNREADABLE, f"cannot extract: {exc}")
    return problems


def _file_entry(
    name: str,
    dest: Path,
    refuse: Callable[[str, str], None],
    *,
    link: bool,
    directory: bool,
    regular: bool,
) -> PurePosixPath | None:
    """The relative path to extract a zip or tar entry's file to; None when the entry is
    refused (``refuse`` is told why), skipped, or a directory (made here)."""
    rel = _safe_name(name)
    if isinstance(rel, str):
        refuse(P.PATH_NOT_ALLOWED, f"{rel}; not extracted")
        return None
    if rel.parts[0] in SKIPPED:
        return None
    if link:
        refuse(P.PATH_NOT_ALLOWED, "a link; not extracted")
        return None
    if directory:
        (dest / Path(*rel.parts)).mkdir(parents=True, exist_ok=True)
        return None
    if not regular:
        refuse(P.NOT_A_REGULAR_FILE, "a device, FIFO or socket; not extracted")
        return None
    return rel


def _ratio_msg(limits: ArchiveLimits) -> str:
    return f"unpacks to over {limits.max_ratio:g} times its compressed size; not extracted"


def _extract_tar(source: str, path: Path, dest: Path, limits: ArchiveLimits) -> list[Problem]:
    problems: list[Problem] = []
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tf:
        budget = _Budget(source, limits, path.stat().st_size)
        count = 0
        for member in tf:
            count += 1
            if count > limits.max_entries:
                raise DatasetError(f"{source}: more than {limits.max_entries} entries")
            name = member.name

            def refuse(reason: str, why: str, name: str = name) -> None:
                problems.append(_entry_problem(source, name, reason, why))

            rel = _file_entry(
                name,
                dest,
                refuse,
                link=member.issym() or member.islnk(),
                directory=member.isdir(),
                regular=member.isfile(),
            )
            if rel is None:
                continue
            try:
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                refuse(P.PATH_NOT_ALLOWED, f"{exc}; not extracted")
                continue
            if budget.total + member.size > limits.max_total_bytes:
                raise DatasetError(
                    f"{source}: unpacks to more than {limits.max_total_bytes} bytes; refused"
                )
            src = tf.extractfile(member)
            if src is None:
                refuse(P.NOT_A_REGULAR_FILE, "no file data; not extracted")
                continue
            try:
                target = _place(dest, rel)
                # No per-entry compressed size in a tar: the overall ratio is checked against
                # the compressed bytes read so far.
                _copy(src, target, budget, float("inf"), tell=raw.tell)
            except _Refused as exc:
                refuse(P.PATH_NOT_ALLOWED, f"{exc}; not extracted")
            except FileExistsError:
                refuse(P.BAD_ROW, "a second entry of that name; not extracted")
    return problems


def import_target(folder: Path) -> Path:
    """What to import from an extracted archive: its one top-level CSV/JSONL file, else the
    folder (descending into a single top-level folder, as zips of a folder have)."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        indexes = [p for p in entries if p.is_file() and p.suffix.lower() in (".csv", ".jsonl")]
        if len(indexes) == 1:
            return indexes[0]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
            continue
        return folder


def remove(folder: Path) -> None:
    """Remove an extraction folder (never following links out of it)."""
    shutil.rmtree(folder, ignore_errors=True)
