"""KServe Open Inference Protocol (v2) with Triton's binary tensor data extension.

Inputs (exactly one): ``image`` BYTES [N] (encoded image files; base64 strings in JSON,
raw bytes in the binary extension) or ``pixels`` UINT8 [N, H, W, 3]. Outputs:
``probabilities`` FP32 [N, labels] and ``label`` BYTES [N] (the most likely label).
An output is sent as binary data when its ``binary_data`` parameter says so, else when the
request's ``binary_data_output`` does (tritonclient asks for binary by default).
Infer bodies are ``application/json``, or ``application/octet-stream`` with the binary
extension's ``Inference-Header-Content-Length``; no Content-Type is accepted too, as
tritonclient sends none (a browser's cross-site POST is refused by the Origin check).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

import autovision
from autovision.serving.deps import ModelDep, StateDep, predict_auth, require_media
from autovision.serving.errors import ApiError, validation_message
from autovision.serving.inference import b64decode, classify, prepare_encoded, prepare_pixels
from autovision.serving.schemas import (
    InferInput,
    InferRequest,
    ModelMetadata,
    ServerMetadata,
    request_body,
)
from autovision.serving.state import MODEL_VERSION_HEADER, ServedModel, ServerState

router = APIRouter(tags=["v2"], dependencies=[Depends(predict_auth)])

HEADER_LENGTH = "inference-header-content-length"
OUTPUTS = ("probabilities", "label")


def model_metadata(state: ServerState, served: ServedModel) -> dict[str, Any]:
    """KServe model metadata; ``versions``: every version of its name loaded here."""
    return {
        "name": served.key,
        "versions": state.loaded_versions(served),
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(served.labels)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


@router.get("/v2", response_model=ServerMetadata)
async def server_metadata() -> Any:
    return {
        "name": "autovision",
        "version": autovision.__version__,
        "extensions": ["binary_tensor_data"],
    }


@router.get("/v2/models/{model:model_id}", response_model=ModelMetadata)
@router.get("/v2/models/{model:model_id}/versions/{version}", response_model=ModelMetadata)
async def metadata(served: ModelDep, state: StateDep, version: str | None = None) -> Any:
    """``version`` (KServe's route shape) is any loaded version; ModelDep picks it."""
    return model_metadata(state, served)


@router.get("/v2/models/{model:model_id}/ready")
@router.get("/v2/models/{model:model_id}/versions/{version}/ready")
async def model_ready(served: ModelDep, version: str | None = None) -> Any:
    return {"name": served.key, "ready": True}


# ---- tensors ------------------------------------------------------------------------


def _bad(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def _count(shape: list[int], name: str, limit: int) -> int:
    """Elements in ``shape``, exactly (Python integers: ``np.prod`` wraps around past
    2**63); more than ``limit`` (the body size limit: every element takes a byte at least)
    is refused before anything is allocated."""
    if any(d < 0 for d in shape):
        raise _bad(f"input {name!r}: negative dimension in shape {shape}")
    count = math.prod(shape)
    if count > limit:
        raise _bad(
            f"input {name!r}: shape {shape} has {count} elements, more than a request of at "
            f"most {limit} bytes can carry",
            "invalid_shape",
        )
    return count


def split_bytes_elements(buf: bytes, name: str) -> list[bytes]:
    """Triton's BYTES serialisation: each element a 4-byte little-endian length + bytes."""
    out, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise _bad(f"input {name!r}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", buf, i)
        i += 4
        if i + n > len(buf):
            raise _bad(f"input {name!r}: BYTES element longer than the data")
        out.append(buf[i : i + n])
        i += n
    return out


def join_bytes_elements(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for d in data:
        out.extend(_flatten(d))
    return out


def _image_payloads(inp: InferInput, raw: bytes | None, limit: int) -> tuple[int, list[Any]]:
    """``(n, elements)``: raw bytes (binary extension) or base64 strings (JSON)."""
    if inp.datatype != "BYTES":
        raise _bad(f"input 'image' must be BYTES, not {inp.datatype}", "invalid_datatype")
    if len(inp.shape) not in (1, 2) or (len(inp.shape) == 2 and inp.shape[1] != 1):
        raise _bad(f"input 'image' must have shape [N] or [N, 1], not {inp.shape}")
    n = _count(inp.shape, "image", limit)
    if raw is not None:
        elements: list[Any] = split_bytes_elements(raw, "image")
    else:
        elements = _flatten(inp.data)
        if not all(isinstance(e, str) for e in elements):
            raise _bad("input 'image': JSON data must be base64 strings")
    if len(elements) != n:
        raise _bad(f"input 'image': shape {inp.shape} but {len(elements)} elements")
    return n, elements


def _pixels(inp: InferInput, raw: bytes | None, limit: int) -> np.ndarray:
    if inp.datatype != "UINT8":
        raise _bad(f"input 'pixels' must be UINT8, not {inp.datatype}", "invalid_datatype")
    shape = inp.shape
    if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
        raise _bad(f"input 'pixels' must have shape [N, H, W, 3], not {shape}")
    count = _count(shape, "pixels", limit)
    if raw is not None:
        if len(raw) != count:
            raise _bad(f"input 'pixels': shape {shape} needs {count} bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
    flat = _flatten(inp.data)
    if len(flat) != count:
        raise _bad(f"input 'pixels': shape {shape} but {len(flat)} values")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in flat):
        raise _bad("input 'pixels': values must be integers 0..255")
    return np.asarray(flat, dtype=np.uint8).reshape(shape)


def _parse(raw: bytes, header_length: str | None) -> tuple[InferRequest, list[bytes | None]]:
    """The JSON header and, per input, its binary data (None when the data is in JSON)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(raw):
            raise _bad("invalid Inference-Header-Content-Length")
        raw, binary = raw[: int(header_length)], raw[int(header_length) :]
    try:
        req = InferRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise _bad(validation_message(exc.errors())) from None
    chunks: list[bytes | None] = []
    offset = 0
    for inp in req.inputs:
        size = inp.parameters.get("binary_data_size")
        if size is None:
            if inp.data is None:
                raise _bad(f"input {inp.name!r} has neither data nor binary_data_size")
            chunks.append(None)
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise _bad(f"input {inp.name!r}: binary_data_size does not fit the binary data")
        chunks.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise _bad("binary data after the inputs that no input claims")
    return req, chunks


def _request_id(raw: bytes, header_length: str | None) -> str | None:
    """The request's ``id`` from a body that failed validation, to echo in the error."""
    if header_length is not None and header_length.isdigit():
        raw = raw[: int(header_length)]
    try:
        found = json.loads(raw).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return found if isinstance(found, str) and len(found) <= 256 else None


def _requested_outputs(req: InferRequest) -> list[tuple[str, bool]]:
    default_binary = bool(req.parameters.get("binary_data_output", False))
    if req.outputs is None:
        return [(name, default_binary) for name in OUTPUTS]
    out = []
    for o in req.outputs:
        if o.name not in OUTPUTS:
            raise _bad(f"unknown output {o.name!r}; outputs are {', '.join(OUTPUTS)}")
        if o.parameters.get("classification"):
            raise _bad("the classification extension is not supported; read 'label'")
        out.append((o.name, bool(o.parameters.get("binary_data", default_binary))))
    return out


# ---- infer ----------------------------------------------------------------------------


INFER_BODY = request_body(InferRequest, "application/octet-stream")


@router.post("/v2/models/{model:model_id}/infer", openapi_extra=INFER_BODY)
@router.post("/v2/models/{model:model_id}/versions/{version}/infer", openapi_extra=INFER_BODY)
async def infer(
    request: Request, served: ModelDep, state: StateDep, version: str | None = None
) -> Response:
    header_length = request.headers.get(HEADER_LENGTH)
    binary_types = ("application/octet-stream",) if header_length is not None else ()
    require_media(request, "application/json", *binary_types, missing_ok=True)
    raw_body = await request.body()
    try:
        req, chunks = _parse(raw_body, header_length)
    except ApiError:
        request.state.infer_id = _request_id(raw_body, header_length)
        raise
    request.state.infer_id = req.id  # echoed by the error handler from here on
    outputs = _requested_outputs(req)
    if len(req.inputs) != 1 or req.inputs[0].name not in ("image", "pixels"):
        names = [i.name for i in req.inputs]
        raise _bad(f"expected one input named 'image' or 'pixels', got {names}", "invalid_input")
    inp, raw = req.inputs[0], chunks[0]
    spec = served.package.preprocessing
    max_pixels = state.settings.max_pixels
    limit = state.settings.max_body_bytes
    if inp.name == "image":
        n, elements = _image_payloads(inp, raw, limit)

        def prepare(spec=spec) -> np.ndarray:
            payloads = [
                e if isinstance(e, bytes) else b64decode(e, i) for i, e in enumerate(elements)
            ]
            return prepare_encoded(payloads, spec, max_pixels)
    else:
        pixels = _pixels(inp, raw, limit)
        n = len(pixels)

        def prepare(spec=spec) -> np.ndarray:
            return prepare_pixels(pixels, spec, max_pixels)

    probs = np.asarray(await classify(state, served, n, prepare, route="v2"), dtype=np.float32)
    return _response(served, req, probs, outputs)


def _response(
    served: ServedModel, req: InferRequest, probs: np.ndarray, outputs: list[tuple[str, bool]]
) -> Response:
    labels = [served.labels[i] for i in probs.argmax(axis=1)]
    tensors, blobs = [], []
    for name, binary in outputs:
        if name == "probabilities":
            t: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(probs.shape)}
            data: Any = probs.astype("<f4").tobytes() if binary else probs.ravel().tolist()
        else:
            t = {"name": name, "datatype": "BYTES", "shape": [len(labels)]}
            data = join_bytes_elements([s.encode() for s in labels]) if binary else labels
        if binary:
            t["parameters"] = {"binary_data_size": len(data)}
            blobs.append(data)
        else:
            t["data"] = data
        tensors.append(t)
    body: dict[str, Any] = {
        "model_name": served.key,
        "model_version": served.version_string,
        "outputs": tensors,
    }
    if req.id is not None:
        body["id"] = req.id
    headers = {MODEL_VERSION_HEADER: served.version_label}
    if not blobs:
        return JSONResponse(body, headers=headers)
    header = json.dumps(body, separators=(",", ":")).encode()
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header)), **headers},
    )
