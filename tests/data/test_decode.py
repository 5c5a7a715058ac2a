"""Safe decoding: allowlist, pixel limit before decode, EXIF orientation, mode conversion."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autovision.data.decode import decode_image
from autovision.errors import ImageDecodeError


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "ICO"])
def test_allowed_formats_decode_to_rgb(make_image, fmt):
    data = _encode(make_image(1, 32), fmt)
    out = decode_image(data)
    assert out.image.mode == "RGB"
    assert out.format == fmt
    assert (out.width, out.height) == (32, 32)


@pytest.mark.parametrize(
    ("mode", "value"),
    [("RGBA", (10, 20, 30, 0)), ("LA", (10, 0)), ("P", 3), ("CMYK", (0, 0, 0, 0)), ("I;16", 60000)],
)
def test_modes_are_converted(mode, value):
    img = Image.new(mode, (8, 8), value)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    out = decode_image(_encode(img, fmt))
    assert out.image.mode == "RGB"
    if mode in ("RGBA", "LA"):  # fully transparent -> white background
        assert out.image.getpixel((0, 0)) == (255, 255, 255)
    if mode == "I;16":
        assert out.image.getpixel((0, 0))[0] > 200


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    out = decode_image(_encode(img, "JPEG", exif=exif.tobytes()))
    assert out.image.size == (20, 40)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty_file"),
        (b"hello, I am text", "unsupported_format"),
        (b"%PDF-1.4 not allowed", "unsupported_format"),
    ],
)
def test_bad_bytes(data, reason):
    with pytest.raises(ImageDecodeError) as exc:
        decode_image(data)
    assert exc.value.reason == reason


def test_truncated_is_unreadable(make_image):
    data = _encode(make_image(0, 64), "JPEG")
    with pytest.raises(ImageDecodeError) as exc:
        decode_image(data[: len(data) // 2])
    assert exc.value.reason == "unreadable"


def test_pixel_limit_checked_before_decoding():
    bomb = _encode(Image.new("1", (6000, 6000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError) as exc:
        decode_image(bomb, max_pixels=10_000_000)
    assert exc.value.reason == "too_many_pixels"


def test_draft_keeps_original_size(make_image):
    img = Image.fromarray(np.full((480, 640, 3), 128, np.uint8))
    out = decode_image(_encode(img, "JPEG"), draft=(128, 128))
    assert (out.width, out.height) == (640, 480)
    assert out.image.size[0] <= 640
