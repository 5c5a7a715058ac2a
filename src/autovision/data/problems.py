"""Problems found while reading a source: one entry per bad input, never a crash."""

from __future__ import annotations

from dataclasses import asdict, dataclass

MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
UNREADABLE = "unreadable"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_MANY_PIXELS = "too_many_pixels"
PATH_NOT_ALLOWED = "path_not_allowed"  # outside the file's folder and every --allow-root
URL_NOT_ALLOWED = "url_not_allowed"  # a remote URL without --allow-urls, or a private address
NOT_A_REGULAR_FILE = "not_a_regular_file"  # a device, FIFO or socket (or such archive entry)
FILE_TOO_LARGE = "file_too_large"  # over --max-file-mb, or an archive entry over its ratio
BAD_ROW = "bad_row"
BAD_LABEL = "bad_label"

REASONS = (
    MISSING_FILE,
    EMPTY_FILE,
    UNREADABLE,
    UNSUPPORTED_FORMAT,
    TOO_MANY_PIXELS,
    PATH_NOT_ALLOWED,
    URL_NOT_ALLOWED,
    NOT_A_REGULAR_FILE,
    FILE_TOO_LARGE,
    BAD_ROW,
    BAD_LABEL,
)
# Only with a decoded-bytes budget tighter than the default, which the pixel limit keeps
# every allowed image under: the server's, not an import's (so not among REASONS).
DECODE_BUDGET_EXCEEDED = "decode_budget_exceeded"


@dataclass(frozen=True)
class Problem:
    """A bad input: where it is (``source`` and 1-based ``line``), why, and a readable message."""

    source: str
    reason: str
    message: str
    line: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)
