"""The request path shared by every predict route: admit, preprocess in the thread pool,
batch, await with the request timeout; and the Vertex-style prediction format.

Decoding is bounded twice: every image's decoded bytes, and their sum over the request, are
checked from the headers before any image is decoded. A request past its deadline stops its
preprocessing at the next image boundary (each image's cost being bounded, that is enough),
and its images stay admitted until its preprocessing thread has actually finished.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from autovision.data.decode import (
    DEFAULT_MAX_DECODED_BYTES,
    decode_opened,
    inspect_image,
    release_memory,
)
from autovision.errors import ImageDecodeError
from autovision.models.preprocess import Preprocessing, normalize, resize_image
from autovision.serving.batching import BatcherStopped, DynamicBatcher, QueueFull
from autovision.serving.errors import ApiError, decode_error
from autovision.serving.middleware import key_id_var, request_id_var

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


# JPEGs decode at a reduced DCT scale no smaller than this many times the input size.
DRAFT_FACTOR = 2
# Hand freed memory back to the OS after a request whose images decoded to this much.
TRIM_AFTER_BYTES = 32 * 1024 * 1024


class RequestAbandoned(Exception):
    """The request timed out or its caller left: its preprocessing stops here."""


@dataclass
class Job:
    """One request's preprocessing: its decode budgets, its deadline and its stop flag,
    checked by the preprocessing thread between images and before each resize. Stopping
    there is enough: the budget bounds what any one image's decode can cost."""

    max_image_bytes: int = DEFAULT_MAX_DECODED_BYTES
    max_request_bytes: int = DEFAULT_MAX_DECODED_BYTES
    deadline: float = math.inf
    capture: Any = None  # a monitoring.log.Capture when the prediction log samples it
    _stop: threading.Event = field(default_factory=threading.Event)

    def abandon(self) -> None:
        self._stop.set()

    @property
    def abandoned(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self.deadline

    def check(self) -> None:
        if self.abandoned:
            raise RequestAbandoned()


_JOB: contextvars.ContextVar[Job | None] = contextvars.ContextVar("autovision_job", default=None)


def current_job() -> Job:
    """The job of the request whose ``prepare()`` runs in this context (set by
    :func:`classify`, so every route's ``prepare`` gets it without passing it along)."""
    return _JOB.get() or Job()


def decode_to_pixels(
    payloads: Sequence[bytes], spec: Preprocessing, max_pixels: int, job: Job | None = None
) -> np.ndarray:
    """Encoded images -> uint8 [N, S, S, 3] resized like training, safely decoded: every
    header is checked against the budgets before the first image is decoded."""
    job = job or current_job()
    side = DRAFT_FACTOR * spec.input_size
    if job.capture is not None:  # the logged statistics are measured on a 128 px thumbnail
        from autovision.data.quality import ANALYSIS_MAX_SIDE

        side = max(side, ANALYSIS_MAX_SIDE)
    draft = (side, side)
    opened = []
    total = 0
    for i, data in enumerate(payloads):
        try:
            o = inspect_image(
                data, max_pixels=max_pixels, max_decoded_bytes=job.max_image_bytes, draft=draft
            )
        except ImageDecodeError as exc:
            raise decode_error(exc, i) from None
        total += o.decoded_bytes
        if total > job.max_request_bytes:
            raise ApiError(
                413,
                "decode_budget_exceeded",
                f"instance {i}: the first {i + 1} images decode to {total} bytes, over the "
                f"limit of {job.max_request_bytes} bytes per request",
            )
        opened.append(o)
    out = []
    try:
        for i in range(len(opened)):
            job.check()
            try:
                img = decode_opened(opened[i]).image
            except ImageDecodeError as exc:
                raise decode_error(exc, i) from None
            if job.capture is not None:
                job.capture.add(payloads[i], (opened[i].width, opened[i].height), img)
            opened[i] = None  # type: ignore[call-overload]
            job.check()
            out.append(resize_image(img, spec))
            del img
    finally:
        if total >= TRIM_AFTER_BYTES:
            release_memory()
    return np.stack(out)


def prepare_encoded(payloads: Sequence[bytes], spec: Preprocessing, max_pixels: int) -> np.ndarray:
    x = decode_to_pixels(payloads, spec, max_pixels)
    current_job().check()
    return normalize(x, spec)


def prepare_pixels(pixels: np.ndarray, spec: Preprocessing, max_pixels: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> the model input, resized like an encoded image would be."""
    n, h, w, _ = pixels.shape
    if h * w > max_pixels:
        raise ApiError(400, "too_many_pixels", f"{w}x{h} pixels is over the limit of {max_pixels}")
    s = spec.input_size
    job = current_job()
    if job.capture is not None:
        for p in pixels:
            job.capture.add(p, (w, h), Image.fromarray(np.ascontiguousarray(p), "RGB"))
    if (h, w) == (s, s):
        return normalize(pixels, spec)
    resized = []
    for p in pixels:
        job.check()
        resized.append(resize_image(Image.fromarray(np.ascontiguousarray(p), "RGB"), spec))
    return normalize(np.stack(resized), spec)


class _Admission:
    """Keeps a request's images admitted until both its preprocessing thread has finished
    and the request is done with the batcher (answered, or its queued batch cancelled)."""

    def __init__(self, batcher: DynamicBatcher, ticket: int) -> None:
        self._batcher = batcher
        self._ticket = ticket
        self._holds = 2  # the preprocessing thread, the request
        self._lock = threading.Lock()
        self.submitted = False

    def drop(self, *_: object) -> None:
        with self._lock:
            self._holds -= 1
            last = self._holds == 0
        if last:
            self._batcher.release(self._ticket, submitted=self.submitted)


async def classify(
    state: ServerState,
    served: ServedModel,
    n: int,
    prepare: Callable[[], np.ndarray],
    *,
    route: str = "predict",
) -> np.ndarray:
    """Probabilities [n, labels] for one request; ``prepare()`` runs in the thread pool with
    the request's :class:`Job` in its context (budgets, deadline, stop flag);
    ``prepare(spec)``: the same images for another preprocessing (a shadow challenger's).
    The prediction log (when on) gets it under ``route``."""
    began = time.perf_counter()
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
    job = Job(
        max_image_bytes=settings.max_decoded_bytes_per_image,
        max_request_bytes=settings.max_decoded_bytes_per_request,
        deadline=time.monotonic() + settings.request_timeout_s,
    )
    plog = state.plog
    if plog is not None and plog.sample():
        from autovision.monitoring.log import Capture

        job.capture = Capture()
    ctx = contextvars.copy_context()
    ctx.run(_JOB.set, job)
    admission = _Admission(served.batcher, ticket)
    try:
        if state.pool is None:
            raise RuntimeError("no preprocessing pool")
        prepared = state.pool.submit(ctx.run, prepare)
    except RuntimeError:  # the pool is shut down
        admission.drop()
        admission.drop()
        raise ApiError(503, "unavailable", "the server is shutting down", headers=retry) from None
    prepared.add_done_callback(admission.drop)
    future = None
    answered = False
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            x = await asyncio.wrap_future(prepared)
            future = served.batcher.submit(x)
            admission.submitted = True
            probs, emb = served.split(await asyncio.wrap_future(future))
            answered = True
            state.usage.observe(served.id, n, time.perf_counter() - began)
    except TimeoutError:
        raise ApiError(
            504, "timeout", f"no answer within {settings.request_timeout_s:g} s"
        ) from None
    except BatcherStopped:
        raise ApiError(503, "unavailable", "the server is shutting down", headers=retry) from None
    finally:
        if not answered:
            job.abandon()
            prepared.cancel()
        if future is None:
            admission.drop()
        else:
            if not answered:
                future.cancel()
            future.add_done_callback(admission.drop)
    if job.capture is not None:  # the prediction log, off the response path
        _log(state, served, probs, emb, job.capture, route, began)
    if state.shadow is not None:  # the challenger, off the response path
        state.shadow.offer(served, x, probs, request_id_var.get(), prepare)
    return probs


def _log(state, served, probs, emb, capture, route: str, began: float) -> None:
    """Hand one answered request to the prediction log; never raises."""
    from datetime import UTC, datetime

    from autovision.monitoring.log import Entry

    try:
        state.plog.offer(
            Entry(
                time=datetime.now(UTC),
                request_id=request_id_var.get(),
                key_id=key_id_var.get(),
                name=served.name,
                model_id=served.id,
                version=served.version,
                route=route,
                labels=served.labels,
                decide=served.package.decide,
                probs=probs,
                embedding=emb,
                latency_ms=(time.perf_counter() - began) * 1000.0,
                capture=capture,
            )
        )
    except Exception:  # noqa: BLE001 - logging must never fail a prediction
        logging.getLogger("autovision.serving").exception("prediction log offer failed")


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
    route: str = "predict",
) -> dict[str, Any]:
    """The Vertex AI response for ``n`` images; a non-None ``keys[i]`` is echoed as ``key``;
    ``modelVersionId`` says which version answered (absent for a model id alone)."""
    probs = await classify(state, served, n, prepare, route=route)
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
