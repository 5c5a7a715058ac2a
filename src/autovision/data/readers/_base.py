"""The reader interface: a source in, a stream of :class:`Record` or :class:`Problem` out."""

from __future__ import annotations

import abc
import posixpath
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autovision.data.fetch import ReadRefused, read_local
from autovision.data.problems import PATH_NOT_ALLOWED, URL_NOT_ALLOWED, Problem

MAX_LABEL_LENGTH = 128
MAX_INDEX_BYTES = 1 << 30  # a CSV/JSONL file itself
# Schemes a row may name with --allow-urls: http(s) by our own fetcher, object stores by fsspec.
URL_SCHEMES = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")

# ML_USE values of the CSV (any case) and of the JSONL ``ml_use`` resource label.
ML_USE = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "validate": "validation",
    "test": "test",
    "unassigned": None,
}


@dataclass(frozen=True)
class Record:
    """One image named by a source: where it is and what the source says about it.

    ``source`` is the path or URL as written in the source (what reports show); ``uri`` is
    where to read it (an absolute local path or a URL). ``multi_label`` is True when the
    source's own layout says multi-label (JSONL ``classificationAnnotations``).
    """

    source: str
    uri: str
    line: int | None = None
    labels: tuple[str, ...] = ()
    ml_use: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    multi_label: bool = False


@dataclass(frozen=True)
class Scope:
    """What rows may name beyond the folder of their file: more local ``roots`` (resolved
    real paths) and, with ``allow_urls``, remote URLs."""

    roots: tuple[str, ...] = ()
    allow_urls: bool = False


class Reader(abc.ABC):
    """Reads one kind of source. Yields a record per image and a problem per bad input;
    raises :class:`~autovision.errors.DatasetError` only when the source is no dataset."""

    name: str = ""

    @abc.abstractmethod
    def read(self, source: str, *, scope: Scope | None = None) -> Iterator[Record | Problem]:
        """Stream the records (and problems) of ``source``; rows stay inside ``scope``."""


def check_label(text: str) -> tuple[str | None, str]:
    """Validate a label; returns ``(label, "")`` or ``(None, why)``.

    The rule: surrounding whitespace is stripped; the result has 1 to 128 characters, no
    control characters, no ``/`` or ``\\`` and is not ``.`` or ``..`` (labels become
    folder names in a folder export and must stay portable).
    """
    label = text.strip()
    if not label:
        return None, "empty label"
    if len(label) > MAX_LABEL_LENGTH:
        return None, f"label longer than {MAX_LABEL_LENGTH} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in label):
        return None, f"label {label!r} contains control characters"
    if "/" in label or "\\" in label:
        return None, f"label {label!r} contains a path separator"
    if label in (".", ".."):
        return None, f"label {label!r} is not allowed"
    return label, ""


def is_url(path: str) -> bool:
    """True for ``scheme://...`` (file://, s3://, gs://, http(s)://, ...)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.isascii() and scheme.replace("+", "").isalnum() and len(scheme) > 1


def local_path(url_or_path: str) -> str | None:
    """The local path of a plain path or ``file://`` URL; ``None`` for remote URLs."""
    if url_or_path.startswith("file://"):
        return url_or_path[len("file://") :]
    return None if is_url(url_or_path) else url_or_path


def resolve_entry(
    path: str, base: str, *, source: str, line: int | None, scope: Scope | None = None
) -> str | Problem:
    """Where to read ``path`` named in a file whose folder is ``base``, or why not.

    Every local path and ``file://`` URL (relative, absolute, ``..``, links) goes through one
    check on its resolved real path: inside ``base`` or one of ``scope.roots``, else
    ``path_not_allowed``. Relative rows of a file on object storage stay inside its prefix.
    Other URLs need ``scope.allow_urls``, else ``url_not_allowed``.
    """
    scope = scope or Scope()
    where = f"line {line}: " if line is not None else ""
    if is_url(path) and not path.startswith("file://"):
        scheme = path.split("://", 1)[0].lower()
        if not scope.allow_urls:
            why = f"{where}{path!r}: remote URLs in rows are not read without --allow-urls"
            return Problem(source, URL_NOT_ALLOWED, why, line)
        if scheme not in URL_SCHEMES:
            why = f"{where}{path!r}: {scheme}:// is not read (one of {', '.join(URL_SCHEMES)})"
            return Problem(source, URL_NOT_ALLOWED, why, line)
        return path
    is_file_url = path.startswith("file://")
    lp = path[len("file://") :] if is_file_url else path
    if is_file_url and lp.startswith("localhost/"):
        lp = lp[len("localhost") :]
    roots = [Path(r).expanduser().resolve() for r in scope.roots]
    if is_url(base):
        if not is_file_url and not posixpath.isabs(lp):
            return _inside_prefix(lp, base, source=source, line=line)
        candidate = Path(lp)
    else:
        roots.insert(0, Path(base).resolve())
        candidate = Path(base) / lp
    if not candidate.is_absolute():
        why = f"{where}{path!r} is relative to no local folder"
        return Problem(source, PATH_NOT_ALLOWED, why, line)
    target = candidate.resolve()
    if not any(target.is_relative_to(root) for root in roots):
        inside = f"the folder of the file {str(roots[0])!r}" if roots else "no allowed folder"
        return Problem(
            source,
            PATH_NOT_ALLOWED,
            f"{where}{path!r} resolves to {str(target)!r}, outside {inside} "
            "(--allow-root DIR allows another folder)",
            line,
        )
    return str(target)


def _inside_prefix(path: str, base: str, *, source: str, line: int | None) -> str | Problem:
    scheme, _, rest = base.partition("://")
    joined = posixpath.normpath(posixpath.join(rest, path))
    root = posixpath.normpath(rest)
    if joined != root and not joined.startswith(root.rstrip("/") + "/"):
        where = f"line {line}: " if line is not None else ""
        return Problem(
            source, PATH_NOT_ALLOWED, f"{where}{path!r} escapes the folder of the file", line
        )
    return f"{scheme}://{joined}"


def source_folder(source: str) -> str:
    """The folder of a CSV/JSONL file (a local path or a URL prefix)."""
    lp = local_path(source)
    if lp is not None:
        return str(Path(lp).expanduser().resolve().parent)
    return source.rsplit("/", 1)[0]


def read_text(source: str, *, kind: str) -> str:
    """The text of a local or fsspec-URL file; a clear error when it is missing or binary.

    Undecodable bytes are kept as surrogates so that one bad line is one ``bad_row``.
    """
    from autovision.errors import DatasetError

    lp = local_path(source)
    try:
        if lp is not None:
            path = Path(lp).expanduser()
            if path.is_dir():
                raise DatasetError(f"{source}: is a folder, not a {kind} file")
            data = read_local(str(path), MAX_INDEX_BYTES, nofollow=False)
        else:
            from autovision.workspace.storage import open_url

            with open_url(source) as fh:
                data = fh.read(MAX_INDEX_BYTES + 1)
            if len(data) > MAX_INDEX_BYTES:
                raise DatasetError(f"{source}: over {MAX_INDEX_BYTES} bytes, not read")
    except ReadRefused as exc:
        raise DatasetError(f"{source}: {exc.message}") from None
    except FileNotFoundError:
        raise DatasetError(f"{source}: no such file or folder") from None
    except OSError as exc:
        raise DatasetError(f"{source}: cannot read the {kind} file: {exc}") from None
    if not data.strip():
        raise DatasetError(f"{source}: the {kind} file is empty")
    if b"\x00" in data[:8192]:
        raise DatasetError(f"{source}: binary data, not a {kind} file")
    text = data.decode("utf-8-sig", errors="surrogateescape")
    head = text[:8192]
    if sum(1 for ch in head if "\udc80" <= ch <= "\udcff") > len(head) // 10:
        raise DatasetError(f"{source}: not UTF-8 text, not a {kind} file")
    return text


def bad_text(text: str) -> bool:
    """True when a line holds bytes that were not valid UTF-8."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, line)`` for the lines of a text, ``\\r\\n`` or ``\\n``."""
    for i, line in enumerate(text.split("\n"), start=1):
        yield i, line.rstrip("\r")
