"""Predict a handful of uploaded images (bytes, each with the name it came with) in this
process: what the console's "try it" shows.

The images go through the server's decode path, so the answer is the one ``autovision
serve`` would give for the same bytes: every header is checked against the pixel limit and
the decoded-bytes budgets (per image, and summed over the upload) before any image is
decoded; JPEGs decode at the same reduced DCT scale; then resize and normalize as in
training. Unlike a server request, one bad image does not refuse the others: each image
gets its own result, with the reason and a message naming its file when it failed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autovision.data import problems as P
from autovision.data.decode import (
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    OpenedImage,
    decode_opened,
    inspect_image,
)
from autovision.errors import ImageDecodeError
from autovision.models.package import ModelPackage
from autovision.models.preprocess import normalize, resize_image
from autovision.predict.results import format_prediction, label_thresholds

DRAFT_FACTOR = 2
"""JPEGs decode at a DCT scale no smaller than this many times the input size, as the
server does (``serving.inference.DRAFT_FACTOR``; a test keeps the two equal)."""


@dataclass(frozen=True)
class ImagePrediction:
    """One uploaded image's answer: ``prediction`` (``ids``, ``displayNames``,
    ``confidences``, sorted by confidence, as the server and ``predict_batch`` write it),
    ``probabilities`` (every label's, in the package's label order), or ``reason`` and
    ``message`` when it could not be predicted. ``preview``: a small JPEG when asked for."""

    name: str
    prediction: dict[str, list] | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    width: int | None = None
    height: int | None = None
    preview: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.prediction is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "ok": self.ok}
        if self.ok:
            out.update(
                prediction=self.prediction,
                probabilities=self.probabilities,
                width=self.width,
                height=self.height,
            )
        else:
            out["error"] = {"reason": self.reason, "message": self.message}
        return out


def _failed(name: str, reason: str, message: str) -> ImagePrediction:
    return ImagePrediction(name=name, reason=reason, message=f"{name}: {message}")


def _preview(img: Any, side: int) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def predict_encoded(
    package: ModelPackage,
    images: Sequence[tuple[str, bytes]],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_image_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    max_total_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    confidence_threshold: float | None = None,
    max_predictions: int | None = None,
    preview: int | None = None,
) -> list[ImagePrediction]:
    """``[(name, bytes), ...]`` -> one :class:`ImagePrediction` per image, in order.

    ``max_image_bytes``: what one image may decode to; ``max_total_bytes``: what the images
    that are decoded may decode to together (an image past it is refused, the ones before it
    are predicted). Both are checked from the headers before the first decode, so a
    decompression bomb costs nothing. ``preview``: also make a JPEG of at most that many
    pixels a side of each image. Which labels a prediction lists: see
    :func:`~autovision.predict.results.label_thresholds`.
    """
    spec = package.preprocessing
    side = DRAFT_FACTOR * spec.input_size
    results: list[ImagePrediction | None] = [None] * len(images)
    opened: dict[int, OpenedImage] = {}
    sizes: dict[int, tuple[int, int]] = {}
    total = 0
    for i, (name, data) in enumerate(images):
        try:
            o = inspect_image(
                data, max_pixels=max_pixels, max_decoded_bytes=max_image_bytes, draft=(side, side)
            )
        except ImageDecodeError as exc:
            results[i] = _failed(name, exc.reason, exc.message)
            continue
        if total + o.decoded_bytes > max_total_bytes:
            results[i] = _failed(
                name,
                P.DECODE_BUDGET_EXCEEDED,
                f"decodes to {o.decoded_bytes} bytes; with the images before it that is over "
                f"the limit of {max_total_bytes} bytes per upload (send fewer at once)",
            )
            continue
        total += o.decoded_bytes
        opened[i] = o
        sizes[i] = (o.width, o.height)
    pixels: dict[int, np.ndarray] = {}
    previews: dict[int, bytes] = {}
    for i, o in opened.items():
        name = images[i][0]
        try:
            img = decode_opened(o).image
            pixels[i] = resize_image(img, spec)
            if preview:
                previews[i] = _preview(img, preview)
        except ImageDecodeError as exc:
            results[i] = _failed(name, exc.reason, exc.message)
        except Exception as exc:  # noqa: BLE001 - one bad image never stops the others
            results[i] = _failed(name, P.UNREADABLE, f"{type(exc).__name__}: {exc}")
        finally:
            opened[i] = None  # type: ignore[assignment]  # free the decoder's buffers
    if pixels:
        order = sorted(pixels)
        probs = package.predict_array(normalize(np.stack([pixels[i] for i in order]), spec))
        thresholds = label_thresholds(
            package.task,
            len(package.labels),
            model_thresholds=package.thresholds,
            confidence_threshold=confidence_threshold,
        )
        for i, row in zip(order, probs, strict=True):
            results[i] = ImagePrediction(
                name=images[i][0],
                prediction=format_prediction(row, package.labels, thresholds, max_predictions),
                probabilities={
                    label: round(float(p), 6) for label, p in zip(package.labels, row, strict=True)
                },
                width=sizes[i][0],
                height=sizes[i][1],
                preview=previews.get(i),
            )
    return [r for r in results if r is not None]
