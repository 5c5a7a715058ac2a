"""A small Python client for the autovision prediction server (Vertex AI request format).

    from autovision import Client

    client = Client("http://127.0.0.1:8080", api_key="...", model="m-20250101-...")
    [pred] = client.predict("cat.jpg")
    pred.label, pred.confidence

Retries with exponential backoff on 429 and 503 (honouring ``Retry-After``) and on
connection errors; any other failure raises :class:`ClientError` with the server's code.
"""

from __future__ import annotations

import base64
import io
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from autovision.errors import AutovisionError

__all__ = ["Client", "ClientConnectionError", "ClientError", "Prediction"]

RETRY_STATUSES = frozenset({429, 503})
DEFAULT_MAX_REQUEST_BYTES = 8_000_000  # under the server's default 10 MB body limit


class ClientError(AutovisionError):
    """The server refused or failed a request.

    ``status_code`` is the HTTP status (``None`` when the server was not reached), ``code``
    and ``message`` come from the server's ``{"error": {"code", "message"}}`` body.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.server_message = server_message


class ClientConnectionError(ClientError):
    """The server could not be reached (after the retries)."""


@dataclass(frozen=True)
class Prediction:
    """Labels of one image, sorted by confidence (the server's ``ids`` / ``displayNames`` /
    ``confidences``)."""

    ids: list[str]
    display_names: list[str]
    confidences: list[float]
    key: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str | None:
        """The most confident label (``None`` when no label passed the threshold)."""
        return self.display_names[0] if self.display_names else None

    @property
    def confidence(self) -> float | None:
        return self.confidences[0] if self.confidences else None

    @property
    def scores(self) -> dict[str, float]:
        """``{label: confidence}`` for the labels returned."""
        return dict(zip(self.display_names, self.confidences, strict=False))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        return cls(
            ids=[str(i) for i in d.get("ids", [])],
            display_names=list(d.get("displayNames", [])),
            confidences=[float(c) for c in d.get("confidences", [])],
            key=d.get("key"),
            raw=d,
        )


ImageLike = str | os.PathLike[str] | bytes | bytearray | memoryview | Any


class Client:
    """Talks to ``autovision serve`` (or any server speaking its Vertex-style format).

    ``model`` is the default model id for :meth:`predict`; ``retries`` is how many times a
    request is tried again (so ``retries + 1`` attempts), waiting ``backoff * 2**n`` seconds
    (or the server's ``Retry-After``), at most ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        model: str | None = None,
        timeout: float = 30,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        batch_size: int = 32,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.batch_size = max(1, batch_size)
        self.max_request_bytes = max_request_bytes
        headers = {"User-Agent": "autovision-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )
        self._sleep = time.sleep

    def __repr__(self) -> str:
        return f"Client({self.url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- API --------------------------------------------------------------------------

    def predict(
        self,
        images: ImageLike | Sequence[ImageLike],
        *,
        model: str | None = None,
        confidence_threshold: float | None = None,
        max_predictions: int | None = None,
    ) -> list[Prediction]:
        """Predict image files (paths), encoded bytes or PIL images; one :class:`Prediction`
        per image, in order. Large lists are sent in several requests."""
        items = [images] if _is_single(images) else list(images)
        if not items:
            return []
        model = model or self.model or self._only_model()
        parameters: dict[str, Any] = {}
        if confidence_threshold is not None:
            parameters["confidenceThreshold"] = confidence_threshold
        if max_predictions is not None:
            parameters["maxPredictions"] = max_predictions
        path = f"/v1/models/{quote(model, safe='')}:predict"
        out: list[Prediction] = []
        for group in self._groups(_encode(x) for x in items):
            body: dict[str, Any] = {"instances": [{"content": b64} for b64 in group]}
            if parameters:
                body["parameters"] = parameters
            data = self._request("POST", path, json=body).json()
            preds = data.get("predictions") if isinstance(data, dict) else None
            if not isinstance(preds, list) or len(preds) != len(group):
                raise ClientError(
                    f"unexpected response from {self.url}{path}: expected {len(group)} predictions"
                )
            out.extend(Prediction.from_dict(p) for p in preds)
        return out

    def health(self) -> bool:
        """True when the server is up and its models are loaded (``/v2/health/ready``);
        False when it is not ready or cannot be reached. Never retries."""
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> list[dict[str, Any]]:
        """The models the server serves (``GET /v1/models``, any prediction key): dicts
        with ``id``, ``task``, ``labels``, ``inputSize``."""
        data = self._request("GET", "/v1/models").json()
        models = data.get("models", data) if isinstance(data, dict) else data
        return [m if isinstance(m, dict) else {"id": str(m)} for m in models or []]

    def model_info(self, model: str | None = None) -> dict[str, Any]:
        """What the server says of one model (``GET /v1/models/{model}``)."""
        model = model or self.model or self._only_model()
        data = self._request("GET", f"/v1/models/{quote(model, safe='')}").json()
        return data.get("model", data) if isinstance(data, dict) else {"model": data}

    # ---- plumbing ---------------------------------------------------------------------

    def _only_model(self) -> str:
        try:
            ids = [m.get("id") or m.get("name") for m in self.models()]
        except ClientError as exc:
            if exc.status_code not in (401, 403, 404):
                raise
            raise ClientError(
                "name a model: Client(..., model=ID) or predict(..., model=ID) "
                f"(the server does not list its models to this caller: HTTP {exc.status_code})",
                status_code=exc.status_code,
                code=exc.code,
                server_message=exc.server_message,
            ) from None
        if len(ids) == 1 and ids[0]:
            return str(ids[0])
        raise ClientError(
            f"name a model: Client(..., model=ID) or predict(..., model=ID) "
            f"(the server has {len(ids)}: {', '.join(map(str, ids)) or 'none'})"
        )

    def _groups(self, encoded: Iterator[str]) -> Iterator[list[str]]:
        group: list[str] = []
        size = 0
        for b64 in encoded:
            if group and (
                len(group) >= self.batch_size or size + len(b64) > self.max_request_bytes
            ):
                yield group
                group, size = [], 0
            group.append(b64)
            size += len(b64) + 16
        if group:
            yield group

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise ClientConnectionError(
                        f"cannot reach {self.url}{path} after {attempt + 1} attempts: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self._sleep(self._delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                self._sleep(self._delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            if response.is_success:
                return response
            raise _error(response, method, path, attempts=attempt + 1)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        wait = _retry_after_seconds(retry_after)
        if wait is None:
            wait = self.backoff * (2**attempt) * (1 + 0.1 * random.random())
        return max(0.0, min(wait, self.max_backoff))


def _is_single(images: Any) -> bool:
    """One image (a path, bytes, a PIL image, an [H, W, C] array) rather than a list."""
    if isinstance(images, str | bytes | bytearray | memoryview | os.PathLike):
        return True
    return hasattr(images, "save") or getattr(images, "ndim", 0) in (2, 3)


def _encode(image: ImageLike) -> str:
    """An image as base64 text: files and bytes as they are, PIL images and arrays as PNG."""
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
    elif isinstance(image, str | os.PathLike):
        with open(image, "rb") as fh:
            data = fh.read()
    else:
        from PIL import Image

        if not isinstance(image, Image.Image):
            import numpy as np

            image = Image.fromarray(np.asarray(image))
        if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16", "1"):
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _error(response: httpx.Response, method: str, path: str, *, attempts: int) -> ClientError:
    code: str | None = None
    message: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
    elif isinstance(body, dict) and "detail" in body:
        message = str(body["detail"])
    if message is None:
        message = response.text[:200] or response.reason_phrase
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    label = f"{response.status_code} {code}" if code else str(response.status_code)
    return ClientError(
        f"{method} {path} failed{tried}: HTTP {label}: {message}",
        status_code=response.status_code,
        code=str(code) if code is not None else None,
        server_message=message,
    )
