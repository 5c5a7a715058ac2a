"""Gallery thumbnails: made once per image and size, then read from the workspace cache.

``thumbnail(ws, sha256, size=256) -> bytes`` decodes the blob with the safe decoder
(:mod:`autovision.data.decode`: allowlisted formats, pixel and decoded-bytes limits), scales
it to at most ``size`` pixels on its long side and stores it as WebP (JPEG where Pillow has
no WebP) under ``cache/thumbs/<size>/<sha[:2]>/<sha>.<ext>``. Blobs are content addressed,
so a thumbnail never goes stale and can be served with a long cache lifetime. Writes are a
temporary file then a rename: two processes making the same thumbnail both end with a whole
file. With an encryption key the thumbnail is encrypted like the blob it comes from.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from PIL import Image, features

from autovision.data import problems as P
from autovision.data.decode import decode_image
from autovision.errors import DatasetError, ImageDecodeError
from autovision.security import crypto

__all__ = ["MEDIA_TYPE", "make_thumbnail", "thumbnail", "thumbnail_path"]

DEFAULT_SIZE = 256
MIN_SIZE, MAX_SIZE = 16, 1024
FORMAT = "WEBP" if features.check("webp") else "JPEG"
MEDIA_TYPE = "image/webp" if FORMAT == "WEBP" else "image/jpeg"
QUALITY = 80
_SHA = re.compile(r"[0-9a-f]{64}")


def _check(sha256: str, size: int) -> None:
    if not isinstance(sha256, str) or not _SHA.fullmatch(sha256):
        raise DatasetError(f"invalid image id {sha256!r}: expected 64 lowercase hex digits")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise DatasetError(f"invalid thumbnail size {size!r}: from {MIN_SIZE} to {MAX_SIZE}")


def thumbnail_path(ws: Any, sha256: str, size: int = DEFAULT_SIZE) -> Path:
    """Where the thumbnail of ``sha256`` at ``size`` is (or will be) stored."""
    _check(sha256, size)
    ext = "webp" if FORMAT == "WEBP" else "jpg"
    return Path(ws.cache_dir) / "thumbs" / str(size) / sha256[:2] / f"{sha256}.{ext}"


def make_thumbnail(data: bytes, size: int = DEFAULT_SIZE) -> bytes:
    """Encoded thumbnail of image bytes (at most ``size`` on the long side, never enlarged)."""
    decoded = decode_image(data, draft=(size, size))
    img = decoded.image
    img.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buf = io.BytesIO()
    if FORMAT == "WEBP":
        img.save(buf, format="WEBP", quality=QUALITY, method=4)
    else:
        img.save(buf, format="JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


def thumbnail(ws: Any, sha256: str, size: int = DEFAULT_SIZE, *, what: str | None = None) -> bytes:
    """The thumbnail of the blob ``sha256``: from the cache, else made once and stored.

    ``what`` names the image in errors (e.g. ``"item 12 (cats/1.jpg) of pets@2"``); an
    undecodable blob raises :class:`ImageDecodeError`, a missing one :class:`DatasetError`.
    """
    path = thumbnail_path(ws, sha256, size)
    key = ws.blobs.key
    aad = f"thumb:{size}:{sha256}".encode()
    if path.exists():
        return crypto.read_file(path, aad, key)
    name = what or f"image {sha256}"
    try:
        data = ws.blobs.get(sha256)
    except FileNotFoundError:
        raise DatasetError(f"{name}: its stored image (blob {sha256}) is missing") from None
    try:
        thumb = make_thumbnail(data, size)
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, f"{name}: cannot make a thumbnail: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a resize or encode failure of a decoded image
        raise ImageDecodeError(P.UNREADABLE, f"{name}: cannot make a thumbnail: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    crypto.write_file(path, thumb, aad, key)
    return thumb
