"""Preprocessing shared by training, evaluation, batch prediction and serving.

Saved in every model package so that serving reproduces it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

RESIZE_RULES = ("squash", "center_crop", "pad")
RESIZE_HOW = {  # for people who reimplement preprocessing (preprocessing.json of an export)
    "squash": "resize to input_size x input_size, ignoring the aspect ratio",
    "center_crop": "resize the short side to input_size, then crop the centre square",
    "pad": "scale = input_size / long side; resize to (round(w * scale), round(h * scale)) "
    "(Python round, at least 1); fill an input_size square with the per-channel median of "
    "the resized image's first and last rows and first and last columns (corners counted "
    "twice), truncated to an integer; paste at ((input_size - w') // 2, (input_size - h') // 2)",
}


@dataclass(frozen=True)
class Preprocessing:
    """Resize to ``input_size`` x ``input_size``, then ``(pixel - mean) / std`` per channel,
    NCHW. Resize rules: ``squash`` ignores the aspect ratio, ``center_crop`` resizes the short
    side then crops, ``pad`` resizes the long side and centres the image on a square filled
    with the median colour of its border (the background of clip art and product shots), so
    nothing is cut off or distorted."""

    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            input_size=int(d["input_size"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            resize=d.get("resize", "squash"),
            interpolation=d.get("interpolation", "bilinear"),
        )


_INTERP = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def resize_image(img: Image.Image, spec: Preprocessing) -> np.ndarray:
    """RGB PIL image -> uint8 array [S, S, 3]."""
    s = spec.input_size
    interp = _INTERP[spec.interpolation]
    if img.mode != "RGB":
        img = img.convert("RGB")
    if spec.resize == "center_crop":
        w, h = img.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        img = img.resize((nw, nh), interp, reducing_gap=3.0)
        left, top = (nw - s) // 2, (nh - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif spec.resize == "pad" and img.size[0] != img.size[1]:
        return _pad_to_square(img, s, interp)
    elif img.size != (s, s):
        img = img.resize((s, s), interp, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


def _pad_to_square(img: Image.Image, s: int, interp: int) -> np.ndarray:
    w, h = img.size
    scale = s / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(img.resize((nw, nh), interp, reducing_gap=3.0), dtype=np.uint8)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    out = np.empty((s, s, 3), dtype=np.uint8)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    top, left = (s - nh) // 2, (s - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def normalize(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 [N, S, S, 3] -> float32 [N, 3, S, S] normalised."""
    x = pixels.astype(np.float32)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[Image.Image], spec: Preprocessing) -> np.ndarray:
    """RGB PIL images -> the model's float32 input [N, 3, S, S]."""
    if not images:
        s = spec.input_size
        return np.zeros((0, 3, s, s), dtype=np.float32)
    return normalize(np.stack([resize_image(im, spec) for im in images]), spec)
