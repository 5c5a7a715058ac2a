"""The reader interface: a source in, a stream of :class:`Record` or :class:`Problem` out."""

from __future__ import annotations

import abc
import posixpath
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from autovision.data.problems import PATH_NOT_ALLOWED, Problem

MAX_LABEL_LENGTH = 128

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


class Reader(abc.ABC):
    """Reads one kind of source. Yields a record per image and a problem per bad input;
    raises :class:`~autovision.errors.DatasetError` only when the source is no dataset."""

    name: str = ""

    @abc.abstractmethod
    def read(self, source: str) -> Iterator[Record | Problem]:
        """Stream the records (and problems) of ``source``."""


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


def resolve_entry(path: str, base: str, *, source: str, line: int | None) -> str | Problem:
    """Where to read ``path`` named in a file whose folder is ``base``.

    Absolute paths and URLs are taken as written; a relative path must stay inside
    ``base`` once resolved (``..`` and links included), or it is ``path_not_allowed``.
    """
    where = f"line {line}: " if line is not None else ""
    if is_url(path):
        lp = local_path(path)
        return str(Path(lp).expanduser()) if lp is not None else path
    if Path(path).is_absolute():
        return path
    if is_url(base):
        joined = posixpath.normpath(posixpath.join(base.split("://", 1)[1], path))
        root = posixpath.normpath(base.split("://", 1)[1])
        if joined != root and not joined.startswith(root.rstrip("/") + "/"):
            return Problem(
                source, PATH_NOT_ALLOWED, f"{where}{path!r} escapes the folder of the file", line
            )
        return f"{base.split('://', 1)[0]}://{joined}"
    root = Path(base).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        return Problem(
            source,
            PATH_NOT_ALLOWED,
            f"{where}{path!r} resolves to {str(target)!r}, outside the folder of the file "
            f"{str(root)!r}",
            line,
        )
    return str(target)


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
            data = path.read_bytes()
        else:
            import fsspec

            with fsspec.open(source, "rb") as fh:
                data = fh.read()
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
