"""Mutated images on every predict route: seeds made in code (PNG, JPEG, WebP, GIF, BMP,
TIFF), then bit flips, truncation, splices and header fields set to huge values (PNG IHDR
with its CRC fixed, JPEG SOF, GIF screen, BMP info header, TIFF IFD, WebP frame). Every
answer is a 200 with a valid prediction or a 4xx with the route's JSON error body; never a
5xx, a hang (per-request timeout) or a path; the server answers /healthz afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given, seed

from . import fuzzing as F

EXAMPLES = int(os.environ.get("AUTOVISION_FUZZ_EXAMPLES", "50"))
FUZZ = F.fuzz_settings(EXAMPLES)


@pytest.fixture
def session(served_ws) -> Iterator[Any]:
    app = F.build_app(served_ws)
    yield F.asgi_session(app)
    F.stop_app(app)


def _report(tally: F.Tally) -> None:
    print("\n" + tally.table())
    for failure in tally.failures:
        print(failure)
    bad = tally.failures
    assert not bad, f"{len(bad)} bad answers:\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize("route", F.IMAGE_ROUTES)
def test_every_seed_format_predicts(session, route):
    for name, data in F.seed_images().items():
        path, r = F.send_image(session, route, data)
        assert r.status_code == 200, (name, r.text)
        assert F.prediction_ok(route, r), (name, r.text)


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("PNG", lambda d: F.png_ihdr(d, 2**31 - 1, 2**31 - 1, None, None)),
        ("PNG", lambda d: F.png_ihdr(d, 0, 0, None, None)),
        ("PNG", lambda d: F.png_ihdr(d, 24, 24, 16, 6)),
        ("JPEG", lambda d: F.jpeg_sof(d, 65535, 65535)),
        ("GIF", lambda d: F.gif_screen(d, 65535, 65535)),
        ("BMP", lambda d: F.bmp_header(d, 2**31 - 1, -(2**31), None)),
        ("TIFF", lambda d: F.tiff_dims(d, 2**32 - 1, 2**32 - 1)),
        ("WEBP", lambda d: F.webp_dims(d, 16383, 16383)),
    ],
)
def test_huge_header_fields_are_refused(session, served_ws, name, mutate):
    """Each header corruption changes the file and is answered with a 4xx, on every route."""
    seed = F.seed_images()[name]
    data = mutate(seed)
    assert data != seed
    tally = F.Tally()
    for route in F.IMAGE_ROUTES:
        path, status, text, ctype = F.answer(lambda r=route: F.send_image(session, r, data))
        F.check_answer(tally, route, path or route, name, status, text, ctype)
        assert status is not None and 400 <= status < 500, (route, status, text)
    _report(tally)


def test_header_helpers_take_any_truncation():
    """The mutations come after truncation too: a header helper given a cut-off file
    returns bytes (the file unchanged when its header is incomplete), it never raises."""
    helpers = [
        lambda d: F.png_ihdr(d, 70000, 70000, None, None),
        lambda d: F.jpeg_sof(d, 70000, 70000),
        lambda d: F.gif_screen(d, 70000, 70000),
        lambda d: F.bmp_header(d, 70000, 70000, 32),
        lambda d: F.tiff_dims(d, 70000, 70000),
        lambda d: F.webp_dims(d, 70000, 70000),
    ]
    for name, data in F.seed_images().items():
        for n in range(len(data) + 1):
            for helper in helpers:
                assert isinstance(helper(data[:n]), bytes), (name, n)


@pytest.mark.slow
@pytest.mark.parametrize("route", F.IMAGE_ROUTES)
def test_mutated_images(session, served_ws, route):
    tally = F.Tally()
    seeds = F.seed_images()
    root = (str(served_ws.root),)

    @FUZZ
    @seed(F.IMAGE_ROUTES.index(route))  # the same cases on every run; bench_fuzz.py explores
    @given(F.mutated_image(seeds))
    def run(case: tuple[str, bytes]) -> None:
        what, _ = case
        failure, status, text = F.check_image_case(tally, session, route, case, root)
        if failure is None and status == 200 and not F.prediction_ok(route, _Json(text)):
            tally.failures.append(F.Failure("invalid prediction", what, status, text))

    run()
    assert F.alive(session)
    _report(tally)


@pytest.mark.parametrize("case", [F.ISSUE11_PIXELS, F.ISSUE11_PIXELS_WRAP], ids=["2^64", "wraps"])
@pytest.mark.parametrize("request_id", [None, "issue-11"])
def test_pixels_shape_overflow_is_invalid_shape(session, case, request_id):
    """Issue 11: a shape whose product passes int64 (``np.prod`` wrapped it, a 500) is a
    400 ``invalid_shape`` in the v2 error form, echoing the request's id."""
    _, inp, _ = case
    body = {"inputs": [inp]} if request_id is None else {"id": request_id, "inputs": [inp]}
    r = session.post(f"/v2/models/{F.MODEL}/infer", json=body, timeout=F.TIMEOUT_S)
    assert r.status_code == 400, r.text
    got = r.json()
    assert got["code"] == "invalid_shape", got
    assert got["error"].startswith("invalid_shape: "), got
    assert str(inp["shape"]) in got["error"], got
    assert got.get("id") == request_id, got
    assert set(got) == {"error", "code"} | ({"id"} if request_id else set()), got


@pytest.mark.slow
def test_fuzzed_pixels(session, served_ws):
    tally = F.Tally()
    root = (str(served_ws.root),)

    @FUZZ
    @seed(0)
    @given(F.pixels_request())
    @example(F.ISSUE11_PIXELS)
    @example(F.ISSUE11_PIXELS_WRAP)
    def run(case: tuple[str, dict, bytes | None]) -> None:
        what, inp, _ = case
        failure, status, text = F.check_pixels_case(tally, session, case, root)
        if failure is None and status == 200:
            n = inp["shape"][0]
            if not F.v2_prediction_ok(_Json(text).json(), n):
                tally.failures.append(F.Failure("invalid prediction", what, status, text))

    run()
    assert F.alive(session)
    _report(tally)


class _Json:
    """The bit of a response ``prediction_ok`` reads, from its text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def json(self) -> Any:
        import json

        return json.loads(self.text)
