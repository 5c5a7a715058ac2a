"""KServe Open Inference Protocol (v2), JSON and Triton's binary tensor data extension."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
from PIL import Image

from .conftest import LABELS, MODEL, TEST_HOST

INFER = f"/v2/models/{MODEL}/infer"


def test_health_routes(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/healthz").status_code == 200
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json()["ready"] is True


def test_ready_is_503_before_start_up(served_ws):
    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    app = create_app(served_ws, [MODEL], settings=ServerSettings(allowed_hosts=[TEST_HOST]))
    client = TestClient(app)  # not entered: the lifespan has not loaded anything
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/live").status_code == 200


def test_server_and_model_metadata(client):
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
    meta = client.get(f"/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "pixels", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
    ]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(LABELS)]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert client.get(f"/v2/models/{MODEL}/versions/1").json() == meta
    assert client.get(f"/v2/models/{MODEL}/versions/7").status_code == 404
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert client.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 200
    r = client.get("/v2/models/other/ready")
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"


def _expected(server, images: list[Image.Image]) -> np.ndarray:
    return server.models[MODEL].package.predict_proba(images)


def test_infer_json_base64(client, server, image_bytes):
    from autovision.data.decode import load_rgb

    raw = [image_bytes(0, 40), image_bytes(2, 48, fmt="JPEG")]
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "image",
                "shape": [2],
                "datatype": "BYTES",
                "data": [base64.b64encode(b).decode() for b in raw],
            }
        ],
    }
    r = client.post(INFER, json=body)
    assert r.status_code == 200, r.text
    assert "inference-header-content-length" not in r.headers
    out = r.json()
    assert out["id"] == "req-1" and out["model_name"] == MODEL
    by_name = {o["name"]: o for o in out["outputs"]}
    probs = np.array(by_name["probabilities"]["data"], dtype=np.float32).reshape(
        by_name["probabilities"]["shape"]
    )
    expected = _expected(server, [load_rgb(b) for b in raw])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert by_name["probabilities"]["datatype"] == "FP32"
    assert by_name["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [2],
        "data": [LABELS[i] for i in expected.argmax(1)],
    }


def _binary_request(inputs, outputs=None, parameters=None) -> tuple[bytes, int | None]:
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, parameters=parameters
    )


def _parse(r):
    import tritonclient.http as httpclient

    length = r.headers.get("inference-header-content-length")
    return httpclient.InferenceServerClient.parse_response_body(
        r.content, header_length=int(length) if length else None
    )


def test_infer_binary_extension_like_tritonclient(client, server, image_bytes):
    import tritonclient.http as httpclient

    from autovision.data.decode import load_rgb

    raw = [image_bytes(1, 40), image_bytes(0, 33, fmt="JPEG"), image_bytes(2, 20)]
    inp = httpclient.InferInput("image", [3], "BYTES")
    inp.set_data_from_numpy(np.array(raw, dtype=object))  # binary_data=True by default
    body, json_size = _binary_request([inp])
    r = client.post(
        INFER,
        content=body,
        headers={
            "Inference-Header-Content-Length": str(json_size),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    header = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
    assert all("binary_data_size" in o["parameters"] for o in header["outputs"])
    result = _parse(r)
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float32 and probs.shape == (3, len(LABELS))
    expected = _expected(server, [load_rgb(b) for b in raw])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    labels = [v.decode() for v in result.as_numpy("label")]
    assert labels == [LABELS[i] for i in expected.argmax(1)]


def test_infer_output_binary_flags(client, image_bytes):
    import tritonclient.http as httpclient

    inp = httpclient.InferInput("image", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[image_bytes(0, 40)]], dtype=object))
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
        httpclient.InferRequestedOutput("label", binary_data=True),
    ]
    body, json_size = _binary_request([inp], outputs)
    r = client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert r.status_code == 200, r.text
    result = _parse(r)
    outs = {o["name"]: o for o in result.get_response()["outputs"]}
    assert "data" in outs["probabilities"] and "data" not in outs["label"]
    assert result.as_numpy("probabilities").shape == (1, len(LABELS))
    assert result.as_numpy("label")[0].decode() in LABELS
    only = [httpclient.InferRequestedOutput("label", binary_data=False)]
    body, json_size = _binary_request([inp], only)
    r = client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]


def test_infer_pixels_json_and_binary(client, server):
    import tritonclient.http as httpclient

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 40, 50, 3), dtype=np.uint8)
    expected = _expected(server, [Image.fromarray(p) for p in pixels])

    inp = httpclient.InferInput("pixels", list(pixels.shape), "UINT8")
    inp.set_data_from_numpy(pixels)
    body, json_size = _binary_request([inp])
    r = client.post(
        INFER, content=body, headers={"Inference-Header-Content-Length": str(json_size)}
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(_parse(r).as_numpy("probabilities"), expected, atol=1e-5)

    small = pixels[:1, :32, :32]
    r = client.post(
        INFER,
        json={
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [1, 32, 32, 3],
                    "datatype": "UINT8",
                    "data": small.ravel().tolist(),
                }
            ]
        },
    )
    assert r.status_code == 200, r.text
    probs = np.array(r.json()["outputs"][0]["data"]).reshape(1, len(LABELS))
    np.testing.assert_allclose(probs, _expected(server, [Image.fromarray(small[0])]), atol=1e-5)


def _json_input(name="image", shape=(1,), datatype="BYTES", data=None, **params):
    d = {"name": name, "shape": list(shape), "datatype": datatype}
    if data is not None:
        d["data"] = data
    if params:
        d["parameters"] = params
    return d


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"inputs": []}, "invalid_request"),
        ({"inputs": [_json_input(datatype="FP32", data=[1.0])]}, "invalid_datatype"),
        ({"inputs": [_json_input(name="images", data=["AAAA"])]}, "invalid_input"),
        ({"inputs": [_json_input(data=["AAAA"]), _json_input(data=["AAAA"])]}, "invalid_input"),
        ({"inputs": [_json_input(shape=(2,), data=["AAAA"])]}, "invalid_request"),
        ({"inputs": [_json_input(data=[1])]}, "invalid_request"),
        ({"inputs": [_json_input()]}, "invalid_request"),
        ({"inputs": [_json_input(data=["!!"])]}, "invalid_base64"),
        ({"inputs": [_json_input("pixels", (1, 2, 2), "UINT8", [0] * 4)]}, "invalid_request"),
        (
            {"inputs": [_json_input("pixels", (1, 1, 1, 3), "UINT8", [0, 1, 256])]},
            "invalid_request",
        ),
        (
            {"inputs": [_json_input(data=["AAAA"])], "outputs": [{"name": "logits"}]},
            "invalid_request",
        ),
        (
            {
                "inputs": [_json_input(data=["AAAA"])],
                "outputs": [{"name": "label", "parameters": {"classification": 2}}],
            },
            "invalid_request",
        ),
    ],
)
def test_infer_invalid_requests(client, body, code):
    r = client.post(INFER, json=body)
    assert r.status_code == 400, r.text
    err = r.json()  # the KServe form: "error" is a string
    assert err["code"] == code and err["error"].startswith(f"{code}: ")


def test_infer_invalid_binary_framing(client, image_bytes):
    header = json.dumps({"inputs": [_json_input(shape=(1,), binary_data_size=100)]}).encode()
    element = struct.pack("<I", 10) + b"short"
    cases = [
        (header + element, str(len(header))),  # binary_data_size beyond the data
        (header + element, "abc"),  # not a number
        (header + element, str(len(header) + 1000)),  # beyond the body
    ]
    for content, length in cases:
        r = client.post(INFER, content=content, headers={"Inference-Header-Content-Length": length})
        assert r.status_code == 400, r.text
    header = json.dumps({"inputs": [_json_input(binary_data_size=len(element))]}).encode()
    r = client.post(
        INFER,
        content=header + element,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "BYTES element" in r.json()["error"]


def test_infer_bad_image_then_good(client, image_bytes):
    bad = {"inputs": [_json_input(data=[base64.b64encode(b"GIF89a-nope").decode()])]}
    r = client.post(INFER, json=bad)
    assert r.status_code in (400, 415)
    good = {"inputs": [_json_input(data=[base64.b64encode(image_bytes(0)).decode()])]}
    assert client.post(INFER, json=good).status_code == 200


# ---- exact shapes, and the request id in errors (issue 11) ----


def _pixels(shape, data, rid="req-7"):
    doc = {"inputs": [{"name": "pixels", "shape": shape, "datatype": "UINT8", "data": data}]}
    return {"id": rid, **doc} if rid else doc


def test_v2_pixels_shape_overflow(client):
    """The finding: np.prod of this shape wraps to 0 -> a 500 from reshape."""
    r = client.post(INFER, json=_pixels([1, 4294967296, 4294967296, 3], []))
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["code"] == "invalid_shape" and err["error"].startswith("invalid_shape: ")
    assert err["id"] == "req-7"
    huge = [2**62, 2**62, 2**62, 3]
    r = client.post(INFER, json=_pixels(huge, [0, 0, 0]))
    assert r.status_code == 400 and r.json()["code"] == "invalid_shape"
    r = client.post(
        INFER,
        json={
            "inputs": [{"name": "image", "shape": [2**64], "datatype": "BYTES", "data": ["AAAA"]}]
        },
    )
    assert r.status_code == 400 and "id" not in r.json()


def test_v2_pixels_shape_overflow_binary(client):
    header = json.dumps(
        {
            "id": "b-1",
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": [1, 2**32, 2**32, 3],
                    "parameters": {"binary_data_size": 0},
                }
            ],
        }
    )
    r = client.post(
        INFER,
        content=header.encode(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_shape"
    assert r.json()["id"] == "b-1"


def test_v2_errors_echo_the_request_id(client):
    r = client.post(INFER, json=_pixels([1, 2, 2], [0] * 4))
    assert r.status_code == 400 and r.json()["id"] == "req-7"
    r = client.post(INFER, json={"id": "bad-1", "inputs": []})  # fails validation
    assert r.status_code == 400 and r.json()["id"] == "bad-1"
    bad = base64.b64encode(b"\x89PNG\r\n\x1a\nnope").decode()
    doc = {
        "id": "img-1",
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [bad]}],
    }
    r = client.post(INFER, json=doc)
    assert r.status_code == 415 and r.json()["id"] == "img-1"
    r = client.post(INFER, json=_pixels([1, 1, 1, 3], [1, 2, 3], rid=None))
    assert r.status_code == 200 and "id" not in r.json()
