"""Review routes: a reviewer (or admin) key reads the queue, sees images and labels; a
predict key is refused; a client sends feedback only for its own predictions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from autovision.security import create_key
from autovision.workspace.db import PredictionLogRow

from .conftest import MODEL


def _log(ws, pid, probs, *, key_id=None, request_id="r-1", image=b"\x89PNG\r\n\x1a\nxx"):
    sha = ws.blobs.put(image) if image else None
    order = sorted(range(3), key=lambda i: -probs[i])
    labels = ("cat", "dog", "fox")
    with ws.Session.begin() as s:
        s.add(
            PredictionLogRow(
                id=pid,
                time=datetime.now(UTC),
                request_id=request_id,
                key_id=key_id,
                name="toy",
                model_id=MODEL,
                version=1,
                probs=list(probs),
                labels=[labels[order[0]]],
                top_label=labels[order[0]],
                confidence=probs[order[0]],
                margin=probs[order[0]] - probs[order[1]],
                image_sha256=sha,
            )
        )


@pytest.fixture
def keys(served_ws):
    return {role: create_key(served_ws, role) for role in ("predict", "reviewer", "admin")}


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_reviewer_reads_sees_and_labels(make_client, served_ws, keys):
    _log(served_ws, "p-1", (0.4, 0.35, 0.25))
    _log(served_ws, "p-2", (0.9, 0.05, 0.05), request_id="r-2")
    client = make_client()
    h = _h(keys["reviewer"][1])
    r = client.get("/admin/review/toy", headers=h)
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == "p-1" and item["top_label"] == "cat"
    img = client.get(item["image_url"], headers=h)
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    bad = client.post("/admin/review/toy/p-1", json={"labels": ["wolf"]}, headers=h)
    assert bad.status_code == 400 and "cat, dog, fox" in bad.json()["error"]["message"]
    ok = client.post("/admin/review/toy/p-1", json={"labels": ["dog"]}, headers=h)
    assert ok.status_code == 200, ok.text
    assert ok.json()["review_labels"] == ["dog"]
    assert ok.json()["reviewer"] == keys["reviewer"][0]
    assert client.get("/admin/review/toy", headers=h).json()["items"] == []
    assert (
        client.post("/admin/review/toy/p-9", json={"labels": ["dog"]}, headers=h).status_code == 404
    )
    text = client.post(
        "/admin/review/toy/p-1",
        content=b'{"labels":["dog"]}',
        headers={**h, "Content-Type": "text/plain"},
    )
    assert text.status_code == 415
    # admin too
    assert client.get("/admin/review/toy", headers=_h(keys["admin"][1])).status_code == 200


def test_predict_key_refused_and_reviewer_cannot_touch_models_or_keys(make_client, served_ws, keys):
    _log(served_ws, "p-1", (0.4, 0.35, 0.25))
    client = make_client()
    p = _h(keys["predict"][1])
    assert client.get("/admin/review/toy", headers=p).status_code == 403
    assert (
        client.post("/admin/review/toy/p-1", json={"labels": ["dog"]}, headers=p).status_code == 403
    )
    assert client.get("/admin/review/toy/p-1/image", headers=p).status_code == 403
    assert client.get("/admin/review/toy").status_code == 401
    rv = _h(keys["reviewer"][1])
    assert client.get("/admin/keys", headers=rv).status_code == 403
    assert client.get("/admin/models", headers=rv).status_code == 403
    assert client.post("/admin/keys", json={"role": "admin"}, headers=rv).status_code == 403
    assert (
        client.put("/admin/models/toy/aliases/x", json={"version": 1}, headers=rv).status_code
        == 403
    )


def test_review_routes_off_until_a_key_exists(make_client, served_ws):
    _log(served_ws, "p-1", (0.4, 0.35, 0.25))
    r = make_client(auth="off").get("/admin/review/toy")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_feedback_only_for_own_predictions(make_client, served_ws, keys):
    alice_id, alice = keys["predict"]
    bob_id, bob = create_key(served_ws, "predict")
    _log(served_ws, "p-1", (0.9, 0.05, 0.05), key_id=alice_id, request_id="req-a")
    client = make_client()
    body = {"request_id": "req-a", "labels": ["fox"], "instance": 0}
    assert client.post("/v1/feedback", json=body, headers=_h(bob)).status_code == 403
    missing = client.post("/v1/feedback", json={**body, "request_id": "nope"}, headers=_h(alice))
    assert missing.status_code == 404
    unknown = client.post("/v1/feedback", json={**body, "labels": ["wolf"]}, headers=_h(alice))
    assert unknown.status_code == 400
    assert client.post("/v1/feedback", json=body).status_code == 401
    ok = client.post("/v1/feedback", json=body, headers=_h(alice))
    assert ok.status_code == 200, ok.text
    assert ok.json()["review_status"] == "queued"
    [item] = client.get("/admin/review/toy", headers=_h(keys["reviewer"][1])).json()["items"]
    assert item["reason"] == "feedback" and item["feedback"]["labels"] == ["fox"]
    assert item["feedback"]["key_id"] == alice_id


def test_feedback_with_auth_off_only_for_keyless_predictions(make_client, served_ws):
    _log(served_ws, "p-1", (0.9, 0.05, 0.05), request_id="open-1")
    _log(served_ws, "p-2", (0.9, 0.05, 0.05), key_id="k-someone", request_id="keyed-1")
    client = make_client(auth="off")
    assert (
        client.post("/v1/feedback", json={"request_id": "open-1", "labels": ["dog"]}).status_code
        == 200
    )
    assert (
        client.post("/v1/feedback", json={"request_id": "keyed-1", "labels": ["dog"]}).status_code
        == 403
    )


def test_reviewer_role_from_the_cli(served_ws, monkeypatch):
    import json

    from typer.testing import CliRunner

    from autovision.cli.main import app

    monkeypatch.setenv("AUTOVISION_WORKSPACE", str(served_ws.root))
    r = CliRunner().invoke(app, ["keys", "create", "--role", "reviewer", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["role"] == "reviewer"
