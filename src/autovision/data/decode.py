"""Safe image decoding: an allowlist of decoders, a pixel limit and a decoded-bytes budget
checked from the header before decoding, EXIF orientation applied, and every mode converted
to 8-bit RGB without temporaries larger than the image itself."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from autovision.data import problems as P
from autovision.errors import ImageDecodeError

# What users send a photo classifier; GIF and TIFF give their first frame only.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_MAX_PIXELS = 40_000_000
# Generous: 40 MP at 16-bit RGBA. The server sets its own, tighter budgets.
DEFAULT_MAX_DECODED_BYTES = 8 * DEFAULT_MAX_PIXELS

# Truncated files are errors, never half images.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own limit is checked from the header; Pillow's own check stays as a second net.
Image.MAX_IMAGE_PIXELS = None

_INT16 = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2"}


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image and facts about the original file."""

    image: Image.Image
    format: str
    width: int
    height: int
    mode: str


def decoded_bytes(img: Image.Image) -> int:
    """Bytes the image decodes to at its current (drafted) size: pixels x channels x bytes
    per sample, from the mode in its header."""
    mode = img.mode
    if mode.startswith("I;16"):
        per_sample = 2
    elif mode in ("I", "F") or mode.startswith(("I;32", "F;")):
        per_sample = 4
    else:
        per_sample = 1
    w, h = img.size
    return w * h * len(img.getbands()) * per_sample


def _gray_to_uint8(img: Image.Image) -> Image.Image:
    """16/32-bit grayscale -> 8-bit L, values above 255 scaled by 255/65535 (16-bit: exactly
    ``v // 257``), in Pillow or float32: never the 8-bytes-a-pixel float64 copy."""
    lo, hi = img.getextrema()
    if img.mode == "I;16":  # Pillow's own point(): one 2-byte image, no Python copy
        return (img.point(lambda v: v / 257) if hi > 255 else img).convert("L")
    if img.mode in _INT16:
        arr = np.asarray(img)
        out = np.empty(arr.shape, np.uint8)
        if hi > 255:
            np.floor_divide(arr, 257, out=out, casting="unsafe")
        else:
            out[...] = arr
        return Image.fromarray(out, mode="L")
    arr = np.array(img, dtype=np.float32)
    if hi > 255:
        arr *= np.float32(255.0 / 65535.0)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in _INT16 or mode in ("I", "F"):
        return _gray_to_uint8(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class OpenedImage:
    """An image opened from its header only: the file's size and what decoding will cost."""

    image: Image.Image
    width: int
    height: int
    decoded_bytes: int


def inspect_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    draft: tuple[int, int] | None = None,
) -> OpenedImage:
    """Open (header only) with the allowed decoders, refusing oversized images.

    ``draft`` makes a JPEG decode at a reduced scale no smaller than that size; the pixel
    limit is checked at the file's size, the decoded bytes at the drafted size.
    """
    if not data:
        raise ImageDecodeError(P.EMPTY_FILE, "file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ImageDecodeError(
            P.UNSUPPORTED_FORMAT,
            f"not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unreadable image
        raise ImageDecodeError(P.UNREADABLE, f"cannot read image header: {exc}") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(P.UNREADABLE, f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise ImageDecodeError(
            P.TOO_MANY_PIXELS,
            f"{w}x{h} = {w * h} pixels is over the limit of {max_pixels}",
        )
    if draft is not None and img.format == "JPEG":
        try:
            img.draft("RGB", draft)
        except Exception as exc:  # noqa: BLE001
            raise ImageDecodeError(P.UNREADABLE, f"cannot read image header: {exc}") from None
    cost = decoded_bytes(img)
    if cost > max_decoded_bytes:
        dw, dh = img.size
        raise ImageDecodeError(
            P.DECODE_BUDGET_EXCEEDED,
            f"{dw}x{dh} {img.mode} decodes to {cost} bytes, over the limit of "
            f"{max_decoded_bytes} bytes per image",
        )
    return OpenedImage(img, w, h, cost)


def open_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> Image.Image:
    """Open (header only) with the allowed decoders, refusing oversized images."""
    return inspect_image(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes).image


def decode_opened(opened: OpenedImage) -> DecodedImage:
    """Decode an image from :func:`inspect_image` into RGB; a GIF or TIFF gives frame 0 only
    (the one the header opened: later frames are never read)."""
    img = opened.image
    fmt = img.format or "UNKNOWN"
    mode = img.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb(img)
            rgb.load()
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(P.UNREADABLE, f"corrupt or truncated image: {exc}") from None
    return DecodedImage(image=rgb, format=fmt, width=opened.width, height=opened.height, mode=mode)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    draft: tuple[int, int] | None = None,
) -> DecodedImage:
    """Decode bytes into an RGB PIL image.

    ``draft`` lets JPEG decode at a reduced scale no smaller than that size (fast analysis);
    ``width``/``height`` always describe the original file.
    """
    opened = inspect_image(
        data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes, draft=draft
    )
    return decode_opened(opened)


def load_rgb(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB image (full resolution)."""
    return decode_image(data, max_pixels=max_pixels).image


# ---- giving memory back -------------------------------------------------------------------

_TRIM_LOCK = threading.Lock()
_last_trim = -math.inf
_trim_timer: threading.Timer | None = None
_malloc_trim = None
_libc_name = ctypes.util.find_library("c")
if _libc_name:
    try:
        _malloc_trim = ctypes.CDLL(_libc_name).malloc_trim
        _malloc_trim.argtypes = [ctypes.c_size_t]
        _malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        _malloc_trim = None


def _trim() -> None:
    global _last_trim, _trim_timer
    with _TRIM_LOCK:
        _last_trim = time.monotonic()
        _trim_timer = None
    _malloc_trim(0)  # type: ignore[misc]


def release_memory(min_interval_s: float = 1.0) -> bool:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``) after a large decode:
    freed image blocks otherwise stay in the RSS, most of all those of pool threads.

    At most one trim per ``min_interval_s``; a call inside the interval schedules one at
    its end (so the last of several concurrent decodes is trimmed too). True if it trimmed
    now."""
    global _trim_timer
    if _malloc_trim is None:
        return False
    with _TRIM_LOCK:
        wait = _last_trim + min_interval_s - time.monotonic()
        if wait > 0:
            if _trim_timer is None:
                _trim_timer = threading.Timer(wait, _trim)
                _trim_timer.daemon = True
                _trim_timer.start()
            return False
    _trim()
    return True
