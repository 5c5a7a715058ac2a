"""Safe image decoding: an allowlist of decoders, a pixel limit checked before decoding,
EXIF orientation applied, and every mode converted to 8-bit RGB."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from autovision.data import problems as P
from autovision.errors import ImageDecodeError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "ICO")
DEFAULT_MAX_PIXELS = 40_000_000

# Truncated files are errors, never half images.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own limit is checked from the header; Pillow's own check stays as a second net.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class DecodedImage:
    """An RGB image and facts about the original file."""

    image: Image.Image
    format: str
    width: int
    height: int
    mode: str


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) with the allowed decoders, refusing oversized images."""
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
    return img


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> DecodedImage:
    """Decode bytes into an RGB PIL image.

    ``draft`` lets JPEG decode at a reduced scale no smaller than that size (fast analysis);
    ``width``/``height`` always describe the original file.
    """
    img = open_image(data, max_pixels=max_pixels)
    fmt = img.format or "UNKNOWN"
    width, height = img.size
    mode = img.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if draft is not None and fmt == "JPEG":
                img.draft("RGB", draft)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb(img)
            rgb.load()
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(P.UNREADABLE, f"corrupt or truncated image: {exc}") from None
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, mode=mode)


def load_rgb(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes to an RGB image (full resolution)."""
    return decode_image(data, max_pixels=max_pixels).image
