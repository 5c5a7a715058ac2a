"""Vertex AI / TF Serving prediction and the multipart upload route."""

from __future__ import annotations

import pytest

from .conftest import LABELS, MODEL


def test_predict_content_sorted_by_confidence(client, b64_image):
    r = client.post(
        f"/v1/models/{MODEL}:predict",
        json={"instances": [{"content": b64_image(0)}, {"content": b64_image(1, fmt="JPEG")}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["deployedModelId"] == MODEL
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert sorted(p["displayNames"]) == sorted(LABELS)
        assert p["confidences"] == sorted(p["confidences"], reverse=True)
        assert sum(p["confidences"]) == pytest.approx(1.0, abs=1e-4)
        assert [LABELS[int(i)] for i in p["ids"]] == p["displayNames"]
        assert "key" not in p


def test_predict_matches_the_package(client, server, image_bytes, b64_image):
    from autovision.data.decode import load_rgb

    pkg = server.models[MODEL].package
    expected = pkg.predict_proba([load_rgb(image_bytes(2, 40, 0))])[0]
    r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"content": b64_image(2)}]})
    p = r.json()["predictions"][0]
    got = dict(zip(p["displayNames"], p["confidences"], strict=True))
    for i, label in enumerate(LABELS):
        assert got[label] == pytest.approx(float(expected[i]), abs=1e-5)


def test_edge_container_instances_echo_key(client, b64_image):
    r = client.post(
        f"/v1/models/{MODEL}:predict",
        json={
            "instances": [
                {"image_bytes": {"b64": b64_image(0)}, "key": "first"},
                {"image_bytes": {"b64": b64_image(1)}, "key": 7},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert [p["key"] for p in r.json()["predictions"]] == ["first", 7]


def test_parameters_threshold_and_max_predictions(client, b64_image):
    url = f"/v1/models/{MODEL}:predict"
    inst = [{"content": b64_image(0)}]
    r = client.post(url, json={"instances": inst, "parameters": {"maxPredictions": 1}})
    assert len(r.json()["predictions"][0]["ids"]) == 1
    r = client.post(url, json={"instances": inst, "parameters": {"confidenceThreshold": 1.0}})
    assert r.json()["predictions"][0] == {"ids": [], "displayNames": [], "confidences": []}
    r = client.post(url, json={"instances": inst, "parameters": {"confidenceThreshold": 0.3}})
    assert all(c >= 0.3 for c in r.json()["predictions"][0]["confidences"])


def test_vertex_endpoint_path(client, b64_image):
    r = client.post(
        f"/v1/projects/p1/locations/us-central1/endpoints/{MODEL}:predict",
        json={"instances": [{"content": b64_image(0)}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["deployedModelId"] == MODEL


def test_colon_routing(client, b64_image):
    body = {"instances": [{"content": b64_image(0)}]}
    # the colon may arrive percent-encoded
    assert client.post(f"/v1/models/{MODEL}%3Apredict", json=body).status_code == 200
    r = client.post(f"/v1/models/{MODEL}:explain", json=body)
    assert r.status_code in (404, 405)
    assert r.json()["error"]["code"] in ("not_found", "method_not_allowed")
    r = client.post("/v1/models/nope:predict", json=body)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_model_status(client):
    r = client.get(f"/v1/models/{MODEL}")
    assert r.status_code == 200
    body = r.json()
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["model"]["labels"] == list(LABELS)
    assert "path" not in body["model"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"instances": []},
        {"instances": [{}]},
        {"instances": [{"content": "x", "image_bytes": {"b64": "x"}}]},
        {"instances": [{"content": "AAAA"}], "parameters": {"confidenceThreshold": 2}},
    ],
)
def test_invalid_requests(client, body):
    r = client.post(f"/v1/models/{MODEL}:predict", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"


def test_invalid_json_and_base64(client):
    r = client.post(
        f"/v1/models/{MODEL}:predict",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
    r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"content": "@@@"}]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_base64"


def test_base64_variants_accepted(client, image_bytes):
    import base64

    data = image_bytes(0, 40)
    wrapped = base64.encodebytes(data).decode()  # line breaks every 76 characters
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    for b64 in (wrapped, urlsafe):
        r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"content": b64}]})
        assert r.status_code == 200, r.text


def test_upload_multipart(client, image_bytes):
    r = client.post(
        f"/v1/models/{MODEL}:upload",
        files={"file": ("cat.jpg", image_bytes(0, 40, fmt="JPEG"), "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    assert p["key"] == "cat.jpg"
    assert len(p["ids"]) == 3


def test_upload_several_files_and_parameters(client, image_bytes):
    r = client.post(
        f"/v1/models/{MODEL}:upload?maxPredictions=2",
        files=[
            ("file", ("a.png", image_bytes(0), "image/png")),
            ("file", ("b.png", image_bytes(1), "image/png")),
        ],
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["key"] for p in preds] == ["a.png", "b.png"]
    assert all(len(p["ids"]) == 2 for p in preds)


def test_upload_without_file(client):
    r = client.post(f"/v1/models/{MODEL}:upload", files={"note": (None, "no file")})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "no_file"
    r = client.post(f"/v1/models/{MODEL}:upload?maxPredictions=0", files={"file": b"x"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"


def test_upload_bad_image(client):
    r = client.post(
        f"/v1/models/{MODEL}:upload", files={"file": ("x.png", b"not an image", "image/png")}
    )
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_format"
