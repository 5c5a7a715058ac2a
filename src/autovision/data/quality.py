"""Per-image quality statistics (computed once at import) and the quality flags.

``analyze(img)`` measures an RGB image on a small copy (at most ``ANALYSIS_MAX_SIDE`` pixels
on the long side), so a JPEG decoded in draft mode and the full image give the same stats
and one image costs well under 2 ms. The importer stores the stats in ``Item.stats``.
``quality_flags(items)`` turns stored stats (and the original ``width``/``height``) into
lists of flagged images; thresholds are the module constants below, in the spirit of
cleanvision's defaults, tuned on sample photos, their blurred, darkened and brightened
copies, and scikit-learn's digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

FLAGS = ("small", "blurry", "dark", "bright", "low_information", "odd_aspect_ratio", "grayscale")

ANALYSIS_MAX_SIDE = 128
"""Stats are measured on a copy at most this many pixels on its long side."""

SMALL_MIN_SIDE = 32
"""``small``: the original's short side is below this many pixels."""
ODD_ASPECT_RATIO = 3.0
"""``odd_aspect_ratio``: long side / short side above this (3:1)."""
DARK_MAX_HIGHLIGHT = 0.35
"""``dark``: ``highlight`` below this: even the brightest 1% of pixels have no channel above
0.35 (of 1). Darkened photos (x0.3) score 0.14 to 0.29, normal photos 0.5 and more. The
strongest channel is used, not luma, so a vivid blue image is not called dark."""
BRIGHT_MIN_SHADOW = 0.65
"""``bright``: ``shadow`` above this: even the darkest 1% of pixels have every channel above
0.65 (washed out, overexposed, blank white). The weakest channel is used, not luma, so a
vivid yellow image is not called bright."""
BLURRY_MAX_SHARPNESS = 0.8
"""``blurry``: ``sharpness`` below this. Sharp photos score 1.7 to 3.9; a Gaussian blur of
sigma 0.8 px on the analysis copy (4 px on a 640 px photo) 0.6 to 1.4, of 1.2 px 0.3 to
0.85; 4x-upscaled images 0.1 to 0.5; smooth gradients 0.3."""
LOW_INFORMATION_MAX_ENTROPY = 2.0
"""``low_information``: grayscale histogram entropy below this many bits (of 8): blank,
near-uniform or few-tone images. Photos score 5 to 7.7, 8x8 digits 1.4 to 3."""
GRAYSCALE_MAX_CHANNEL_DIFF = 0.04
"""``grayscale``: no pixel's channels differ by more than this (about 10/255), which
tolerates JPEG chroma rounding."""
GRAYSCALE_MIN_COLOUR_FRACTION = 0.5
"""``grayscale`` is flagged only when more than this fraction of the measured images is in
colour: a grayscale image among colour ones may be a stray scan, but in a digits or X-ray set
every image is grayscale and flagging them all is noise."""
DATASET_WIDE_FRACTION = 0.5
"""A flag on at least this fraction of images describes the dataset, not single images."""

_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS_SQ = _LEVELS * _LEVELS


def thumbnail(img: Image.Image, max_side: int = ANALYSIS_MAX_SIDE) -> Image.Image:
    """A copy at most ``max_side`` on its long side (the image itself when already small).

    Area averaging (box filter), so the copy, and the stats measured on it, barely depend
    on the size of the source: a 1280, 640 or 320 pixel version (a JPEG draft decode) of a
    photo give nearly the same values. Passing the result to ``analyze`` and
    ``perceptual_hash`` gives the same values as passing the image, and saves a downscale.
    """
    w, h = img.size
    longest = max(w, h)
    if longest <= max_side:
        return img
    factor = longest // max_side
    if factor >= 2:  # an integer box reduction first: exact area averaging, and fast
        img = img.reduce(factor)
        w, h = img.size
        longest = max(w, h)
        if longest <= max_side:
            return img
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.BOX)


def _percentile(plane: np.ndarray, q: float) -> float:
    """The ``q`` quantile (0..1) of a uint8 plane, as a fraction of 255."""
    cum = np.cumsum(np.bincount(plane.ravel(), minlength=256))
    return int(np.searchsorted(cum, q * plane.size)) / 255.0


def analyze(img: Image.Image) -> dict[str, float]:
    """JSON-serialisable stats of an RGB image, measured on its small copy.

    Keys: ``brightness`` (mean luma 0..1), ``highlight`` (99th percentile of each pixel's
    strongest channel), ``shadow`` (1st percentile of each pixel's weakest channel),
    ``contrast`` (luma std), ``entropy`` (bits of the 256-bin luma histogram),
    ``sharpness`` (mean squared Laplacian over mean squared gradient: contrast- and
    size-independent, low when blurry; absent below 3x3 pixels), ``channel_diff`` (largest
    difference between the channels of any pixel, 0 for grayscale), ``colorfulness`` (the
    mean of that difference, a saturation measure), ``mean_r``/``mean_g``/``mean_b`` (used
    to tell near-duplicates from images that only share a structure).
    """
    small = thumbnail(img if img.mode == "RGB" else img.convert("RGB"))
    # Separate contiguous planes: numpy reductions over a length-3 last axis are slow.
    r8, g8, b8 = (np.asarray(band) for band in small.split())
    gray8 = np.asarray(small.convert("L"))
    n = gray8.size

    hist = np.bincount(gray8.ravel(), minlength=256)
    prob = hist[hist > 0] / n
    entropy = float(-(prob * np.log2(prob)).sum())
    mean = float(hist @ _LEVELS) / n
    std = max(float(hist @ _LEVELS_SQ) / n - mean * mean, 0.0) ** 0.5

    sharpness: float | None = None  # not measurable below 3x3 pixels
    if gray8.shape[0] >= 3 and gray8.shape[1] >= 3:
        sharpness = 0.0
        g = gray8.astype(np.float32)
        lap = 4.0 * g[1:-1, 1:-1] - (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:])
        lap, dx, dy = lap.ravel(), np.diff(g, axis=1).ravel(), np.diff(g, axis=0).ravel()
        grad = float(dx @ dx) / dx.size + float(dy @ dy) / dy.size
        if grad > 1e-6:
            sharpness = float(lap @ lap) / lap.size / grad

    strongest = np.maximum(np.maximum(r8, g8), b8)
    weakest = np.minimum(np.minimum(r8, g8), b8)
    highlight = _percentile(strongest, 0.99)
    shadow = _percentile(weakest, 0.01)
    chroma = strongest - weakest
    scale = 255.0 * n
    stats = {
        "brightness": round(mean / 255.0, 4),
        "highlight": round(highlight, 4),
        "shadow": round(shadow, 4),
        "contrast": round(std / 255.0, 4),
        "entropy": round(entropy, 4),
        "channel_diff": round(int(chroma.max()) / 255.0, 4),
        "colorfulness": round(int(chroma.sum(dtype=np.int64)) / scale, 4),
        "mean_r": round(int(r8.sum(dtype=np.int64)) / scale, 4),
        "mean_g": round(int(g8.sum(dtype=np.int64)) / scale, 4),
        "mean_b": round(int(b8.sum(dtype=np.int64)) / scale, 4),
    }
    if sharpness is not None:
        stats["sharpness"] = round(sharpness, 4)
    return stats


def _entry(item: Any, value: float) -> dict[str, Any]:
    return {"id": item.id, "source": item.source, "value": round(float(value), 4)}


def _stat(item: Any, key: str) -> float | None:
    value = (item.stats or {}).get(key)
    return None if value is None else float(value)


def quality_flags(items: Sequence[Any]) -> dict[str, list[dict[str, Any]]]:
    """Images flagged per quality issue, each ``{"id", "source", "value"}``, sorted by id.

    ``value`` is the measure compared with the threshold: the short side for ``small``,
    long/short for ``odd_aspect_ratio``, ``highlight`` for ``dark``, ``shadow`` for
    ``bright``, ``sharpness`` for ``blurry``, ``entropy`` for ``low_information`` and
    ``channel_diff`` for ``grayscale``. Items without stats are only checked for size.
    A low-information image is not also called blurry: without content, blur means nothing.
    Grayscale images are flagged only in a dataset mostly in colour
    (``GRAYSCALE_MIN_COLOUR_FRACTION``), so ``items`` should be the whole dataset.
    """
    flags: dict[str, list[dict[str, Any]]] = {flag: [] for flag in FLAGS}
    measured = 0
    for item in sorted(items, key=lambda it: it.id):
        w, h = int(item.width or 0), int(item.height or 0)
        if w > 0 and h > 0:
            short, long = min(w, h), max(w, h)
            if short < SMALL_MIN_SIDE:
                flags["small"].append(_entry(item, short))
            if long / short > ODD_ASPECT_RATIO:
                flags["odd_aspect_ratio"].append(_entry(item, long / short))

        highlight = _stat(item, "highlight")
        if highlight is not None and highlight < DARK_MAX_HIGHLIGHT:
            flags["dark"].append(_entry(item, highlight))
        shadow = _stat(item, "shadow")
        if shadow is not None and shadow > BRIGHT_MIN_SHADOW:
            flags["bright"].append(_entry(item, shadow))
        entropy = _stat(item, "entropy")
        low_info = entropy is not None and entropy < LOW_INFORMATION_MAX_ENTROPY
        if low_info:
            flags["low_information"].append(_entry(item, entropy))
        sharpness = _stat(item, "sharpness")
        if sharpness is not None and not low_info and sharpness < BLURRY_MAX_SHARPNESS:
            flags["blurry"].append(_entry(item, sharpness))
        channel_diff = _stat(item, "channel_diff")
        if channel_diff is not None:
            measured += 1
            if channel_diff <= GRAYSCALE_MAX_CHANNEL_DIFF:
                flags["grayscale"].append(_entry(item, channel_diff))
    colour = measured - len(flags["grayscale"])
    if colour <= GRAYSCALE_MIN_COLOUR_FRACTION * measured:
        flags["grayscale"] = []
    return flags


def dataset_wide_flags(flags: dict[str, list[dict[str, Any]]], n_images: int) -> dict[str, float]:
    """Flags on at least ``DATASET_WIDE_FRACTION`` of the images, with that fraction.

    Such a flag (all digits are small, every image is upscaled) describes the data, so
    reports mention it once instead of presenting thousands of individual issues. Grayscale
    never gets here: :func:`quality_flags` raises it only on a minority of the images.
    """
    if n_images <= 0:
        return {}
    return {
        flag: round(len(entries) / n_images, 4)
        for flag, entries in flags.items()
        if entries and len(entries) / n_images >= DATASET_WIDE_FRACTION
    }
