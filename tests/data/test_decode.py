"""Safe decoding: allowlist, pixel limit and decoded-bytes budget before decode, EXIF
orientation, mode conversion without large temporaries, first frame only."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from PIL import GifImagePlugin, Image, TiffImagePlugin

from autovision.data.decode import decode_image, decoded_bytes, open_image, release_memory
from autovision.errors import ImageDecodeError


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
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


def test_ico_is_not_accepted(make_image):
    with pytest.raises(ImageDecodeError) as exc:
        decode_image(_encode(make_image(1, 32), "ICO"))
    assert exc.value.reason == "unsupported_format"


@pytest.mark.parametrize(
    ("mode", "per_pixel"),
    [("1", 1), ("L", 1), ("P", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4), ("I;16", 2), ("I", 4)],
)
def test_decoded_bytes_from_the_header_mode(mode, per_pixel):
    assert decoded_bytes(Image.new(mode, (30, 20))) == 30 * 20 * per_pixel


def test_decoded_bytes_budget_checked_before_decoding():
    png16 = _encode(Image.new("I;16", (1000, 1000)), "PNG")  # 2 MB decoded, a few KB on disk
    assert len(png16) < 10_000
    with pytest.raises(ImageDecodeError) as exc:
        open_image(png16, max_decoded_bytes=1_999_999)
    assert exc.value.reason == "decode_budget_exceeded"
    assert "1000x1000 I;16 decodes to 2000000 bytes" in exc.value.message
    assert decode_image(png16, max_decoded_bytes=2_000_000).image.size == (1000, 1000)


def test_jpeg_budget_is_checked_at_the_drafted_size():
    data = _encode(Image.new("RGB", (1600, 1200), (90, 120, 30)), "JPEG")
    with pytest.raises(ImageDecodeError):
        decode_image(data, max_decoded_bytes=1_000_000)
    out = decode_image(data, max_decoded_bytes=1_000_000, draft=(400, 300))  # 1/4 scale
    assert out.image.size == (400, 300) and (out.width, out.height) == (1600, 1200)


def test_16_bit_conversion_without_float64_copies():
    values = np.arange(1000 * 1000, dtype=np.uint32).reshape(1000, 1000) % 65536
    img = Image.frombytes("I;16", (1000, 1000), values.astype("<u2").tobytes())
    data = _encode(img, "PNG")
    tracemalloc.start()
    try:
        out = decode_image(data).image
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3_000_000  # the float64 path traced 8 MB and more for a 1 MP image
    expected = (values // 257).astype(np.uint8)  # 255/65535 scaling, exactly
    assert np.array_equal(np.asarray(out)[..., 0], expected)


def _multi_frame(fmt: str, frames: int) -> bytes:
    colours = [(200, 0, 0)] + [(0, 0, 200)] * (frames - 1)
    imgs = [Image.new("RGB", (16, 16), c) for c in colours]
    return _encode(imgs[0], fmt, save_all=True, append_images=imgs[1:])


@pytest.mark.parametrize(
    ("fmt", "plugin"),
    [("GIF", GifImagePlugin.GifImageFile), ("TIFF", TiffImagePlugin.TiffImageFile)],
)
def test_multi_frame_files_decode_frame_0_only(monkeypatch, fmt, plugin):
    data = _multi_frame(fmt, 200)
    seen: list[int] = []
    real = plugin._seek

    def spy(self, frame, *args, **kwargs):
        seen.append(frame)
        return real(self, frame, *args, **kwargs)

    monkeypatch.setattr(plugin, "_seek", spy)
    out = decode_image(data)
    assert out.format == fmt
    r, g, b = out.image.getpixel((8, 8))
    assert r > 150 and b < 50  # the first frame's red
    assert set(seen) == {0}  # the 199 later frames are never read


def test_release_memory_is_throttled():
    release_memory(min_interval_s=0)
    assert release_memory(min_interval_s=3600) is False
