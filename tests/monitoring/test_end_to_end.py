"""Issue 13 end to end, through a live server on loopback: predictions are logged; the
uncertain ones wait in the review queue in margin order (classes interleaved); a reviewer
key labels them through the API (a predict key is refused, and so is a client sending
feedback for another key's request); ``add-feedback`` makes dataset version N+1 with the
lineage; ``retrain`` trains on it and promotes; the server follows the alias; the next
predictions are logged under the new version.

Promotion uses ``min_gain=-1.0``: on a few dozen generated images whether the candidate
beats the incumbent is a coin toss, and what this test checks is the loop, not the gain
(``tests/versions/test_retrain.py`` checks the gate itself)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import Item
from autovision.monitoring import review as R
from autovision.security import create_key
from autovision.versions import store

SPACE = {
    "backbones": ["efficientnet_lite0"],
    "modes": ["linear"],
    "sizes": {"efficientnet_lite0": [32]},
}
LABELS = ("a", "b")


def _until(ok: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _items(ws, make_image) -> list[Item]:
    items, k = [], 1
    for li, label in enumerate(LABELS):
        for split, n in (("train", 8), ("validation", 3), ("test", 4)):
            for _ in range(n):
                sha = ws.blobs.put(_png(np.asarray(make_image(li, 16, k))))
                items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
                k += 1
    return items


def _requests(make_image) -> list[tuple[str, bytes]]:
    """(true label, PNG): clear images and blends of both classes (uncertain ones)."""
    out = []
    for i in range(4):
        for li, label in enumerate(LABELS):
            out.append((label, _png(np.asarray(make_image(li, 16, 900 + 10 * i + li)))))
        a = np.asarray(make_image(0, 16, 950 + i)).astype(np.float32)
        b = np.asarray(make_image(1, 16, 970 + i)).astype(np.float32)
        w = 0.4 + 0.05 * i
        out.append(
            (LABELS[1] if w < 0.5 else LABELS[0], _png((w * a + (1 - w) * b).astype(np.uint8)))
        )
    return out


@contextlib.contextmanager
def running(app) -> Iterator[int]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started or not thread.is_alive(), 30, "the server to start")
    assert thread.is_alive(), "server did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_review_feedback_retrain_loop(workspace, make_image, monkeypatch):
    from autovision.monitoring.log import query
    from autovision.search.run import train
    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings
    from autovision.versions.retrain import retrain

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    ws = workspace
    ws.create_version("pets", _items(ws, make_image), multi_label=False)
    first = train(ws, "pets", trials=1, name="pets")
    store.set_alias(ws, "pets", 1, "production")
    R.set_review_below(ws, "pets", 1.0)  # every prediction short of certain is reviewed
    alice_id, alice = create_key(ws, "predict")
    _, bob = create_key(ws, "predict")
    reviewer_id, reviewer = create_key(ws, "reviewer")

    settings = ServerSettings(key_cache_ttl_s=0, alias_poll_s=0.2)
    app = create_app(ws, ["pets@production"], settings=settings)
    sent = _requests(make_image)
    truth: dict[str, str] = {}
    with (
        running(app) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http,
    ):
        # 1. predictions, each its own request id, logged
        for i, (label, png) in enumerate(sent):
            rid = f"e2e-{i}"
            body = {"instances": [{"content": base64.b64encode(png).decode()}]}
            r = http.post(
                "/v1/models/pets:predict", json=body, headers={**_h(alice), "X-Request-ID": rid}
            )
            assert r.status_code == 200, r.text
            assert r.json()["modelVersionId"] == "1"
            truth[rid] = label
        logged = _until(
            lambda: (rows := query(ws, "pets")) and len(rows) == len(sent) and rows,
            what="the prediction log",
        )
        assert {r["request_id"] for r in logged} == set(truth)
        assert all(r["version"] == 1 and r["key_id"] == alice_id for r in logged)

        # 2. the queue: uncertain ones, smallest margin first per class, classes interleaved
        expected = {r["id"] for r in logged if r["confidence"] < 1.0}
        assert len(expected) >= 4
        q = http.get("/admin/review/pets", params={"limit": 100}, headers=_h(reviewer))
        assert q.status_code == 200, q.text
        items = q.json()["items"]
        assert {it["id"] for it in items} == expected
        for label in {it["top_label"] for it in items}:
            margins = [it["margin"] for it in items if it["top_label"] == label]
            assert margins == sorted(margins)
        distinct = len({it["top_label"] for it in items})
        assert len({it["top_label"] for it in items[:distinct]}) == distinct
        assert items[0]["margin"] == min(it["margin"] for it in items)
        image = http.get(items[0]["image_url"], headers=_h(reviewer))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"

        # 3. refusals: a predict key on the queue; feedback for someone else's request
        first_item = items[0]
        refused = http.post(
            f"/admin/review/pets/{first_item['id']}", json={"labels": ["a"]}, headers=_h(alice)
        )
        assert refused.status_code == 403
        fb = {"request_id": first_item["request_id"], "labels": [truth[first_item["request_id"]]]}
        assert http.post("/v1/feedback", json=fb, headers=_h(bob)).status_code == 403
        assert http.post("/v1/feedback", json=fb, headers=_h(alice)).status_code == 200

        # 4. the reviewer labels every queued item with the truth
        for it in items:
            r = http.post(
                f"/admin/review/pets/{it['id']}",
                json={"labels": [truth[it["request_id"]]]},
                headers=_h(reviewer),
            )
            assert r.status_code == 200, r.text
            assert r.json()["reviewer"] == reviewer_id
        assert http.get("/admin/review/pets", headers=_h(reviewer)).json()["items"] == []

        # 5. add-feedback: dataset version 2 with lineage, old splits kept
        old = ws.dataset("pets")
        added = R.add_feedback(ws, "pets", from_name="pets")
        assert added["version"] == old.version + 1 and added["added"] == len(items)
        new = ws.dataset("pets")
        assert {i.id: i.split for i in new.items if i.id <= max(o.id for o in old.items)} == {
            o.id: o.split for o in old.items
        }
        lineage = [i.metadata for i in new.items if i.metadata.get("origin") == "feedback"]
        assert {m["feedback.prediction_id"] for m in lineage} == expected
        assert all(m["feedback.model"] == first.model for m in lineage)
        assert all(m["feedback.model_version"] == "1" for m in lineage)
        assert all(m["feedback.reviewer"] == reviewer_id for m in lineage)

        # 6. retrain on it and promote; the server follows production
        result = retrain(ws, "pets", trials=1, budget="2m", min_gain=-1.0)
        assert result.promoted and result.dataset == f"pets@{new.version}", result.reason
        assert store.aliases(ws, "pets")["production"] == 2
        png = sent[0][1]
        body = {"instances": [{"content": base64.b64encode(png).decode()}]}

        def answered_by_2() -> bool:
            r = http.post("/v1/models/pets:predict", json=body, headers=_h(alice))
            return r.status_code == 200 and r.json()["modelVersionId"] == "2"

        _until(answered_by_2, timeout=30, what="the server to follow production to version 2")
        r = http.post(
            "/v1/models/pets:predict", json=body, headers={**_h(alice), "X-Request-ID": "after"}
        )
        assert r.status_code == 200 and r.json()["modelVersionId"] == "2"
        after = _until(
            lambda: [x for x in query(ws, "pets") if x["request_id"] == "after"],
            what="the new version's log record",
        )
        assert after[0]["version"] == 2 and after[0]["model_id"] == result.candidate["id"]
