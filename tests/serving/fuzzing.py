"""What the fuzz tests and ``benchmarks/bench_fuzz.py`` share: the app under test, the
response properties every answer must have, seed images made in code and the hypothesis
strategies that mutate them. Requests go in-process through schemathesis's ASGI client (a
``requests.Session``), which runs the app's lifespan once and honours a per-request timeout.
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from PIL import Image

LABELS = ("cat", "dog", "fox")
MODEL = "m-test"
TIMEOUT_S = 20.0
BASE_URL = "http://127.0.0.1"  # the address the server binds by default (Host checks)
# What no answer may contain unless the request itself did: a stack trace or a path.
LEAK_MARKERS = ("Traceback", 'File "', "/tmp/", "/work/", "/home/", "site-packages", "/usr/")


def fuzz_settings(examples: int, **more: Any) -> settings:
    """The hypothesis settings of every fuzz run: no deadline, no example database, the
    explicit examples then generated ones, no health checks (plus ``more``)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        **more,
    )


# ---- the app under test ----------------------------------------------------------------


def build_package(root: Path) -> Path:
    """The tiny compact-CNN package of tests/serving/conftest.py (3 labels, random weights)."""
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        root / MODEL,
        model,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


def build_app(ws: Any, **settings: Any) -> Any:
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    return create_app(ws, [MODEL], settings=ServerSettings(**{"key_cache_ttl_s": 0.0, **settings}))


def asgi_session(app: Any) -> Any:
    """A ``requests.Session`` on the app (its lifespan started once, kept until exit)."""
    from schemathesis.python import asgi

    return asgi.ASGIClient(app, base_url=BASE_URL).__enter__()


def stop_app(app: Any) -> None:
    """End the lifespans schemathesis started (it keeps them until exit otherwise)."""
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()


# ---- the properties -----------------------------------------------------------------------


@dataclass
class Failure:
    """One answer that broke a property: what was sent and what came back."""

    what: str
    request: str
    status: int | None
    body: str

    def __str__(self) -> str:
        return f"{self.what}: {self.request} -> {self.status} {self.body[:300]!r}"


@dataclass
class Tally:
    """Requests by route and status, and the failures seen (for the report)."""

    statuses: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    def table(self) -> str:
        rows = sorted(self.statuses.items())
        width = max([len(r) for (r, _), _ in rows] + [5])
        lines = [f"{'route':<{width}}  status  requests"]
        lines += [f"{r:<{width}}  {s!s:>6}  {n:8d}" for (r, s), n in rows]
        return "\n".join(lines)


def leaks(text: str, sent: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Markers of a stack trace or a path in ``text`` that the request did not carry."""
    return [m for m in LEAK_MARKERS + extra if m and m in text and m not in sent]


def error_shape_ok(path: str, body: Any) -> bool:
    """``{"error": {"code", "message"}}``, or ``{"error": "CODE: message"}`` under /v2."""
    if not isinstance(body, dict):
        return False
    err = body.get("error")
    if path == "/v2" or path.startswith("/v2/"):
        return isinstance(err, str) and ": " in err
    return (
        isinstance(err, dict)
        and isinstance(err.get("code"), str)
        and isinstance(err.get("message"), str)
    )


def check_answer(
    tally: Tally,
    route: str,
    path: str,
    sent: str,
    status: int | None,
    text: str,
    content_type: str = "",
    *,
    leak_markers: tuple[str, ...] = (),
) -> Failure | None:
    """Record the answer; a Failure when it is a 5xx, a timeout, a leak or a 4xx without the
    route's JSON error body."""
    tally.statuses[(route, str(status) if status is not None else "timeout")] += 1
    problem = None
    if status is None:
        problem = "no answer within the timeout"
    elif status >= 500:
        problem = f"server error {status}"
    elif found := leaks(text, sent, leak_markers):
        problem = f"leaks {found}"
    elif status >= 400 and "json" in content_type:
        try:
            ok = error_shape_ok(path, json.loads(text))
        except ValueError:
            ok = False
        if not ok:
            problem = "error body is not the route's JSON error form"
    elif status >= 400:
        problem = f"error answered as {content_type or 'no content type'}, not JSON"
    if problem is None:
        return None
    failure = Failure(problem, sent[:400], status, text[:1000])
    tally.failures.append(failure)
    return failure


def answer(send: Callable[[], tuple[str, Any]]) -> tuple[str | None, int | None, str, str]:
    """``(path, status, text, content type)`` of ``send()``; status None on a timeout."""
    import requests

    try:
        path, r = send()
    except requests.exceptions.Timeout:
        return None, None, "", ""
    return path, r.status_code, r.text, r.headers.get("content-type", "")


def alive(session: Any) -> bool:
    r = session.get("/healthz", timeout=TIMEOUT_S)
    return r.status_code == 200 and r.json() == {"live": True}


# ---- predictions --------------------------------------------------------------------------


def vertex_prediction_ok(body: Any, n: int) -> bool:
    preds = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(preds, list) or len(preds) != n:
        return False
    for p in preds:
        if not set(p["displayNames"]) <= set(LABELS):
            return False
        if not all(0.0 <= c <= 1.0 for c in p["confidences"]):
            return False
    return True


def v2_prediction_ok(body: Any, n: int) -> bool:
    outs = {o["name"]: o for o in body.get("outputs", [])} if isinstance(body, dict) else {}
    probs, label = outs.get("probabilities"), outs.get("label")
    if probs is None or label is None or probs["shape"] != [n, len(LABELS)]:
        return False
    p = np.asarray(probs["data"], dtype=np.float64).reshape(n, len(LABELS))
    return bool(np.allclose(p.sum(axis=1), 1.0, atol=1e-3)) and set(label["data"]) <= set(LABELS)


# ---- seed images --------------------------------------------------------------------------

SEED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def seed_images(size: int = 24) -> dict[str, bytes]:
    """One small photo-like image per format users send, plus a 16-bit and a palette PNG."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 9 % 256, yy * 7 % 256, (xx + yy) * 5 % 256], axis=-1).astype(np.uint8)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb)
    out = {}
    for fmt in SEED_FORMATS:
        buf = io.BytesIO()
        (img.convert("P") if fmt == "GIF" else img).save(buf, format=fmt)
        out[fmt] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(buf, format="PNG")
    out["PNG16"] = buf.getvalue()
    buf = io.BytesIO()
    img.convert("P").save(buf, format="PNG")
    out["PNGP"] = buf.getvalue()
    return out


# ---- header corruption (one per format, keeping the file otherwise well formed) ------------

HUGE = (0, 1, 65535, 65536, 2**16 + 1, 2**24, 2**31 - 1, 2**31, 2**32 - 1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hostile_png(width: int = 6300, height: int = 6300) -> bytes:
    """A 16-bit grayscale PNG of zeros: about 80 KB that decodes to 2 x width x height bytes
    (the hostile request of issue 11; ``benchmarks/bench_decode_budget.py`` times it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    row = b"\0" * (1 + 2 * width)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    png = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + png


def png_ihdr(data: bytes, width: int, height: int, depth: int | None, colour: int | None) -> bytes:
    """The PNG with IHDR's fields replaced and its CRC fixed (so the decoder reads them)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        return data
    w, h, d, c, rest = struct.unpack(">IIBB3s", data[16:29])
    d = d if depth is None else depth
    c = c if colour is None else colour
    ihdr = struct.pack(">IIBB3s", width % 2**32, height % 2**32, d, c, rest)
    return data[:8] + _png_chunk(b"IHDR", ihdr) + data[33:]


def jpeg_sof(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header's height and width replaced (16 bits each)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return data
        marker = data[i + 1]
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            dims = struct.pack(">HH", height % 65536, width % 65536)
            return data[: i + 5] + dims + data[i + 9 :]
        i += 2 + length
    return data


def gif_screen(data: bytes, width: int, height: int) -> bytes:
    """The GIF with its logical screen and first image descriptor sizes replaced."""
    if data[:3] != b"GIF":
        return data
    dims = struct.pack("<HH", width % 65536, height % 65536)
    out = bytearray(data[:6] + dims + data[10:])
    j = out.find(b"\x2c", 13)
    if j > 0 and j + 9 <= len(out):
        out[j + 5 : j + 9] = dims
    return bytes(out)


def bmp_header(data: bytes, width: int, height: int, bpp: int | None) -> bytes:
    """The BMP with its info header's width, height (signed) and bit count replaced."""
    if data[:2] != b"BM" or len(data) < 30:
        return data
    out = bytearray(data)
    out[18:26] = struct.pack("<ii", _int32(width), _int32(height))
    if bpp is not None:
        out[28:30] = struct.pack("<H", bpp % 65536)
    return bytes(out)


def _int32(v: int) -> int:
    v %= 2**32
    return v - 2**32 if v >= 2**31 else v


def tiff_dims(data: bytes, width: int, height: int) -> bytes:
    """The TIFF with its first IFD's ImageWidth/ImageLength tags replaced."""
    if data[:4] not in (b"II*\x00", b"MM\x00*") or len(data) < 8:
        return data
    e = "<" if data[:2] == b"II" else ">"
    out = bytearray(data)
    (ifd,) = struct.unpack(e + "I", data[4:8])
    if ifd + 2 > len(data):
        return data
    (count,) = struct.unpack(e + "H", data[ifd : ifd + 2])
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(data):
            break
        tag, kind = struct.unpack(e + "HH", data[at : at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                out[at + 8 : at + 12] = struct.pack(e + "HH", value % 65536, 0)
            else:
                out[at + 4 : at + 12] = struct.pack(e + "HI", 4, 1) + struct.pack(
                    e + "I", value % 2**32
                )
                out[at + 2 : at + 4] = struct.pack(e + "H", 4)
    return bytes(out)


def webp_dims(data: bytes, width: int, height: int) -> bytes:
    """The WebP with its VP8 frame (14-bit) or VP8X canvas (24-bit) size replaced."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return data
    out = bytearray(data)
    kind = data[12:16]
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        out[26:30] = struct.pack("<HH", width % 16384, height % 16384)
    elif kind == b"VP8X":
        out[24:30] = ((width - 1) % 2**24).to_bytes(3, "little") + ((height - 1) % 2**24).to_bytes(
            3, "little"
        )
    elif kind == b"VP8L" and data[20:21] == b"\x2f":
        bits = ((width - 1) % 16384) | (((height - 1) % 16384) << 14)
        bits |= int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        out[21:25] = (bits % 2**32).to_bytes(4, "little")
    return bytes(out)


def corrupt_header(data: bytes, width: int, height: int, extra: int | None) -> bytes:
    for fn in (jpeg_sof, gif_screen, tiff_dims, webp_dims):
        changed = fn(data, width, height)
        if changed != data:
            return changed
    if data[:2] == b"BM":
        return bmp_header(data, width, height, extra)
    return png_ihdr(data, width, height, extra, None)


# ---- strategies ---------------------------------------------------------------------------


def _bit_flips(data: bytes, draw: Callable) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 16))):
        # Headers matter most: half the flips land in the first 64 bytes.
        hi = len(out) - 1 if draw(st.booleans()) else min(63, len(out) - 1)
        i = draw(st.integers(0, hi))
        out[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


@st.composite
def mutated_image(draw: Callable, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """``(description, bytes)``: a seed image with one or two mutations applied."""
    names = sorted(seeds)
    name = draw(st.sampled_from(names))
    data = seeds[name]
    steps = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(("flip", "truncate", "splice", "header", "bytes", "none")))
        if kind == "flip" and data:
            data = _bit_flips(data, draw)
        elif kind == "truncate" and data:
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif kind == "splice":
            other = seeds[draw(st.sampled_from(names))]
            cut_a = draw(st.integers(0, len(data)))
            cut_b = draw(st.integers(0, len(other)))
            data = data[:cut_a] + other[cut_b:]
        elif kind == "header":
            width = draw(st.sampled_from(HUGE) | st.integers(0, 70000))
            height = draw(st.sampled_from(HUGE) | st.integers(0, 70000))
            extra = draw(st.none() | st.sampled_from((0, 1, 2, 3, 4, 8, 16, 24, 32, 64, 255)))
            data = corrupt_header(data, width, height, extra)
            kind = f"header {width}x{height} {extra}"
        elif kind == "bytes" and data:
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(max_size=32)) + data[at:]
        steps.append(kind)
    return f"{name} {'+'.join(steps)} ({len(data)} bytes)", data


IMAGE_ROUTES = ("vertex_json", "vertex_image_bytes", "upload", "v2_json", "v2_binary")


def send_image(session: Any, route: str, data: bytes) -> tuple[str, Any]:
    """Send one encoded image on ``route``: ``(path, response)``."""
    b64 = base64.b64encode(data).decode()
    if route in ("vertex_json", "vertex_image_bytes"):
        path = f"/v1/models/{MODEL}:predict"
        inst = {"content": b64} if route == "vertex_json" else {"image_bytes": {"b64": b64}}
        return path, session.post(path, json={"instances": [inst]}, timeout=TIMEOUT_S)
    if route == "upload":
        path = f"/v1/models/{MODEL}:upload"
        files = {"file": ("fuzz.img", data, "application/octet-stream")}
        return path, session.post(path, files=files, timeout=TIMEOUT_S)
    path = f"/v2/models/{MODEL}/infer"
    if route == "v2_json":
        body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]}
        return path, session.post(path, json=body, timeout=TIMEOUT_S)
    element = struct.pack("<I", len(data)) + data
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": len(element)},
                }
            ]
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return path, session.post(path, data=header + element, headers=headers, timeout=TIMEOUT_S)


def prediction_ok(route: str, response: Any) -> bool:
    body = response.json()
    if route.startswith("v2"):
        return v2_prediction_ok(body, 1)
    return vertex_prediction_ok(body, 1)


EXACT_MAX = 4096  # most elements drawn to match a shape exactly (1x24x24x3 is 1728)
DIMS = st.sampled_from((0, 1, 3, 4, 8, 24, 2**16, 2**31, 2**32, 2**32 + 1, 2**62, 2**63, 2**64))


@st.composite
def pixels_request(draw: Callable) -> tuple[str, dict[str, Any], bytes | None]:
    """``(description, input, raw)``: a v2 ``pixels`` input with a fuzzed shape, datatype
    and data, in JSON (raw None) or with binary data."""
    small = st.integers(1, 32)
    dim = DIMS | small
    shape = draw(
        st.lists(DIMS | st.integers(-(2**65), 2**65) | st.integers(0, 32), min_size=0, max_size=5)
        | st.tuples(st.integers(1, 3), small, small, st.just(3)).map(list)
        | st.tuples(dim, dim, dim, st.just(3) | DIMS).map(list)
    )
    datatype = draw(st.sampled_from(("UINT8", "UINT8", "UINT8", "FP32", "BYTES", "INT64")))
    exact = math.prod(shape) if shape and all(0 < d <= 64 for d in shape) else None
    if exact is not None and exact > EXACT_MAX:
        exact = None  # hypothesis draws at most 8 KiB elements; a mismatched count instead
    binary = draw(st.booleans())
    inp: dict[str, Any] = {"name": "pixels", "datatype": datatype, "shape": shape}
    raw = None
    if binary:
        n = exact if exact is not None and draw(st.booleans()) else draw(st.integers(0, 300))
        raw = draw(st.binary(min_size=n, max_size=n))
        inp["parameters"] = {"binary_data_size": len(raw)}
    else:
        n = exact if exact is not None and draw(st.booleans()) else draw(st.integers(0, 50))
        values = (
            st.integers(0, 255)
            | st.integers(-300, 600)
            | st.floats(allow_nan=False, allow_infinity=False)
        )
        flat = draw(st.lists(values, min_size=n, max_size=n))
        inp["data"] = flat if draw(st.booleans()) or not exact else _nest(flat, shape)
    return f"pixels shape={shape} {datatype} {'binary' if binary else 'json'}", inp, raw


# The request issue 11 reported (it was a 500: ``np.prod`` of the shape wrapped in int64).
ISSUE11_PIXELS = (
    "pixels shape=[1, 2**32, 2**32, 3] (issue 11)",
    {"name": "pixels", "datatype": "UINT8", "shape": [1, 2**32, 2**32, 3], "data": []},
    None,
)
# The same overflow where the int64 product wraps to 12, a count the data matches.
ISSUE11_PIXELS_WRAP = (
    "pixels shape=[2**62 + 1, 4, 1, 3] wraps to 12 (issue 11)",
    {"name": "pixels", "datatype": "UINT8", "shape": [2**62 + 1, 4, 1, 3], "data": [1] * 12},
    None,
)


def _nest(flat: list[Any], shape: list[int]) -> Any:
    if len(shape) <= 1:
        return flat
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def send_pixels(session: Any, inp: dict[str, Any], raw: bytes | None) -> tuple[str, Any]:
    path = f"/v2/models/{MODEL}/infer"
    body = {"id": "fuzz-1", "inputs": [inp]}
    if raw is None:
        return path, session.post(path, json=body, timeout=TIMEOUT_S)
    header = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return path, session.post(path, data=header + raw, headers=headers, timeout=TIMEOUT_S)


def check_image_case(
    tally: Tally, session: Any, route: str, case: tuple[str, bytes], markers: tuple[str, ...]
) -> tuple[Failure | None, int | None, str]:
    """Send a ``mutated_image`` case on ``route`` and check the answer: ``(failure, status,
    text)``."""
    what, data = case
    path, status, text, ctype = answer(lambda: send_image(session, route, data))
    failure = check_answer(
        tally, route, path or route, what, status, text, ctype, leak_markers=markers
    )
    return failure, status, text


def check_pixels_case(
    tally: Tally, session: Any, case: tuple[str, dict, bytes | None], markers: tuple[str, ...]
) -> tuple[Failure | None, int | None, str]:
    """Send a ``pixels_request`` case and check the answer: ``(failure, status, text)``."""
    what, inp, raw = case
    path, status, text, ctype = answer(lambda: send_pixels(session, inp, raw))
    failure = check_answer(
        tally, "v2_pixels", path or "/v2", what, status, text, ctype, leak_markers=markers
    )
    return failure, status, text


# ---- every route, from the app's own OpenAPI schema (schemathesis) --------------------------

LIKELY = {"model": MODEL, "endpoint": MODEL, "version": "1"}


def fuzz_schema(app: Any) -> Any:
    """The app's schema (``app.openapi()``; it is not served), calling the app in-process."""
    import schemathesis

    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    return schema


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def case_strategy(operation: Any) -> Any:
    """Positive and negative cases; two in three name the served model (and version 1),
    else nearly every case would be a 404."""
    from schemathesis import GenerationMode

    names = {p.name for p in operation.path_parameters}
    fixed = {k: v for k, v in LIKELY.items() if k in names}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(generation_mode=m) for m in modes]
    if fixed:
        strategies += [
            operation.as_strategy(generation_mode=m, path_parameters=fixed) for m in modes
        ]
        strategies += strategies[2:]
    return st.one_of(strategies)


def call_case(
    case: Any, session: Any, headers: dict[str, str], tally: Tally, markers: tuple = ()
) -> Failure | None:
    """Send one schemathesis case and check its answer."""
    import requests

    route = f"{case.operation.method.upper()} {case.operation.path}"
    sent = case.as_curl_command(headers=headers).replace("http://testserver", BASE_URL)
    try:
        r = case.call(session=session, base_url=BASE_URL, headers=headers, timeout=TIMEOUT_S)
        ctype = r.headers.get("content-type") or r.headers.get("Content-Type") or [""]
        status, text, ctype = r.status_code, r.text, ctype[0]
    except requests.exceptions.Timeout:
        status, text, ctype = None, "", ""
    return check_answer(
        tally,
        route,
        case.formatted_path,
        sent,
        status,
        text,
        ctype,
        leak_markers=markers,
    )
