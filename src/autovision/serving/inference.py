"""The request path shared by every predict route: admit, preprocess in the thread pool,
batch, await with the request timeout; and the Vertex-style prediction format."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autovision.data.decode import decode_image
from autovision.errors import ImageDecodeError
from autovision.models.preprocess import Preprocessing, normalize, resize_image
from autovision.serving.batching import BatcherStopped, QueueFull
from autovision.serving.errors import ApiError, decode_error

if TYPE_CHECKING:
    from autovision.serving.state import ServedModel, ServerState

_B64_TRANSLATE = bytes.maketrans(b"-_", b"+/")


def b64decode(value: str | bytes, index: int | None = None) -> bytes:
    """Standard or URL-safe base64, line breaks and missing padding tolerated."""
    raw = value.encode("ascii", "replace") if isinstance(value, str) else value
    raw = b"".join(raw.split()).translate(_B64_TRANSLATE)
    raw += b"=" * (-len(raw) % 4)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        where = f"instance {index}: " if index is not None else ""
        raise ApiError(400, "invalid_base64", where + "image content is not valid base64") from None


def decode_to_pixels(payloads: Sequence[bytes], spec: Preprocessing, max_pixels: int) -> np.ndarray:
    """Encoded images -> uint8 [N, S, S, 3] resized like training, safely decoded."""
    out = []
    for i, data in enumerate(payloads):
        try:
            img = decode_image(data, max_pixels=max_pixels).image
        except ImageDecodeError as exc:
            raise decode_error(exc, i) from None
        out.append(resize_image(img, spec))
    return np.stack(out)


def prepare_encoded(payloads: Sequence[bytes], spec: Preprocessing, max_pixels: int) -> np.ndarray:
    return normalize(decode_to_pixels(payloads, spec, max_pixels), spec)


def prepare_pixels(pixels: np.ndarray, spec: Preprocessing, max_pixels: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> the model input, resized like an encoded image would be."""
    n, h, w, _ = pixels.shape
    if h * w > max_pixels:
        raise ApiError(400, "too_many_pixels", f"{w}x{h} pixels is over the limit of {max_pixels}")
    s = spec.input_size
    if (h, w) == (s, s):
        return normalize(pixels, spec)
    resized = [resize_image(Image.fromarray(np.ascontiguousarray(p), "RGB"), spec) for p in pixels]
    return normalize(np.stack(resized), spec)


async def classify(
    state: ServerState, served: ServedModel, n: int, prepare: Callable[[], np.ndarray]
) -> np.ndarray:
    """Probabilities [n, labels] for one request; ``prepare()`` runs in the thread pool."""
    settings = state.settings
    retry = {"Retry-After": str(settings.retry_after_s)}
    if n == 0:
        raise ApiError(400, "no_instances", "the request has no images")
    if n > settings.max_instances:
        raise ApiError(
            400,
            "too_many_instances",
            f"{n} images in one request; the limit is {settings.max_instances}",
        )
    try:
        ticket = served.batcher.admit(n)
    except QueueFull:
        raise ApiError(
            429, "overloaded", "too many requests are waiting; retry later", headers=retry
        ) from None
    except BatcherStopped:
        raise ApiError(503, "unavailable", "the server is shutting down", headers=retry) from None
    submitted = False
    future = None
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            x = await asyncio.get_running_loop().run_in_executor(state.pool, prepare)
            future = served.batcher.submit(x)
            submitted = True
            return await asyncio.wrap_future(future)
    except TimeoutError:
        if future is not None:
            future.cancel()
        raise ApiError(
            504, "timeout", f"no answer within {settings.request_timeout_s:g} s"
        ) from None
    except BatcherStopped:
        raise ApiError(503, "unavailable", "the server is shutting down", headers=retry) from None
    finally:
        served.batcher.release(ticket, submitted=submitted)


def vertex_prediction(
    labels: Sequence[str], row: np.ndarray, threshold: float, max_predictions: int
) -> dict[str, Any]:
    """One Vertex AI classification prediction: labels by confidence, filtered and cut."""
    order = np.argsort(-row, kind="stable")[:max_predictions]
    keep = [int(i) for i in order if row[i] >= threshold]
    return {
        "ids": [str(i) for i in keep],
        "displayNames": [labels[i] for i in keep],
        "confidences": [float(row[i]) for i in keep],
    }


async def vertex_predict(
    state: ServerState,
    served: ServedModel,
    n: int,
    prepare: Callable[[], np.ndarray],
    *,
    keys: Sequence[Any],
    threshold: float,
    max_predictions: int,
) -> dict[str, Any]:
    """The Vertex AI response for ``n`` images; a non-None ``keys[i]`` is echoed as ``key``;
    ``modelVersionId`` says which version answered (absent for a model id alone)."""
    probs = await classify(state, served, n, prepare)
    predictions = []
    for key, row in zip(keys, probs, strict=True):
        p = vertex_prediction(served.labels, row, threshold, max_predictions)
        if key is not None:
            p["key"] = key
        predictions.append(p)
    out: dict[str, Any] = {
        "predictions": predictions,
        "deployedModelId": served.id,
        "model": served.id,
    }
    if served.version is not None:
        out["modelVersionId"] = str(served.version)
    return out
