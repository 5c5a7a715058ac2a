"""The shadow challenger: the response is the champion's, both predictions are recorded,
`models compare` counts what the record holds, and a stalled challenger only drops."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.serving.conftest import LABELS, MODEL

CHALLENGER = "m-test-b"


@pytest.fixture(scope="session")
def challenger_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture as the champion with other random weights."""
    return _package(tmp_path_factory.mktemp("shadow") / CHALLENGER, seed=1)


def _package(path: Path, *, seed: int, input_size: int | None = None) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(seed)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=input_size or cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        path, model, labels=LABELS, task="single-label", backbone="compact_cnn", preprocessing=spec
    )


@pytest.fixture
def shadow_ws(served_ws, challenger_package: Path):
    served_ws.register_model(
        CHALLENGER, dataset="toy", dataset_version=1, task="single-label", path=challenger_package
    )
    return served_ws


def _records(ws) -> list:
    from autovision.workspace.db import ShadowRecordRow

    with ws.Session() as s:
        return list(s.scalars(select(ShadowRecordRow).order_by(ShadowRecordRow.id)))


def _bodies(b64_image, n: int) -> list[dict]:
    return [
        {"instances": [{"content": b64_image(i % 3, seed=i)}, {"content": b64_image(1, seed=99)}]}
        for i in range(n)
    ]


def _predict(client, body: dict, rid: str | None = None):
    headers = {"X-Request-ID": rid} if rid else {}
    r = client.post(f"/v1/models/{MODEL}:predict", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_response_is_the_champions_and_both_are_recorded(shadow_ws, make_client, b64_image):
    from autovision.versions import set_alias

    set_alias(shadow_ws, "toy", 2, "challenger")  # toy@1 is the champion (alias default)
    plain = make_client()
    shadowed = make_client(shadow="toy@challenger")
    bodies = _bodies(b64_image, 6)
    for i, body in enumerate(bodies):
        assert _predict(shadowed, body, f"req-{i}") == _predict(plain, body)
    runner = shadowed.app.state.server.shadow
    shadowed.__exit__(None, None, None)  # shutdown flushes the record
    assert runner.stats()["requests"] == 6
    assert runner.stats()["dropped"] == 0

    rows = _records(shadow_ws)
    assert len(rows) == 12  # two images per request
    assert {r.request_id for r in rows} == {f"req-{i}" for i in range(6)}
    from autovision.models.package import ModelPackage
    from autovision.serving.inference import prepare_encoded

    champ = ModelPackage.load(shadow_ws.model(MODEL)["path"])
    chall = ModelPackage.load(shadow_ws.model(CHALLENGER)["path"])
    import base64

    first = [base64.b64decode(inst["content"]) for inst in bodies[0]["instances"]]
    x = prepare_encoded(first, champ.preprocessing, 10**8)
    r0 = [r for r in rows if r.request_id == "req-0"]
    assert [r.instance for r in r0] == [0, 1]
    np.testing.assert_allclose([r.champion_probs for r in r0], champ.predict_array(x), atol=1e-5)
    np.testing.assert_allclose([r.challenger_probs for r in r0], chall.predict_array(x), atol=1e-5)
    assert r0[0].champion_id == MODEL and r0[0].challenger_id == CHALLENGER
    assert r0[0].name == "toy"
    assert (r0[0].champion_version, r0[0].challenger_version) == (1, 2)
    assert r0[0].champion_labels == [LABELS[int(np.argmax(r0[0].champion_probs))]]
    assert r0[0].challenger_labels == [LABELS[int(np.argmax(r0[0].challenger_probs))]]

    # `models compare` against a hand count of the same rows
    from autovision.cli.main import app

    out = CliRunner().invoke(
        app, ["models", "compare", "toy", "toy@challenger", "-w", str(shadow_ws.root), "--json"]
    )
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)["shadow"]
    assert (got["a"]["id"], got["a"]["version"]) == (MODEL, 1)
    assert (got["b"]["id"], got["b"]["version"]) == (CHALLENGER, 2)
    agreed = sum(r.champion_labels == r.challenger_labels for r in rows)
    assert got["n"] == 12 and got["requests"] == 6
    assert got["agreed"] == agreed
    assert got["agreement"] == pytest.approx(agreed / 12)
    for label in {r.champion_labels[0] for r in rows}:
        mine = [r for r in rows if r.champion_labels[0] == label]
        assert got["per_label"][label]["n"] == len(mine)
        assert got["per_label"][label]["agreed"] == sum(
            r.challenger_labels[0] == label for r in mine
        )
    pairs: dict[tuple[str, str], int] = {}
    for r in rows:
        if r.champion_labels != r.challenger_labels:
            key = (r.champion_labels[0], r.challenger_labels[0])
            pairs[key] = pairs.get(key, 0) + 1
    assert {(d["a"], d["b"]): d["count"] for d in got["disagreements"]} == pairs
    hist = [0] * 10
    for r in rows:
        hist[min(9, int(max(r.champion_probs) * 10))] += 1
    assert got["confidence"]["a"] == hist
    assert sum(got["confidence"]["b"]) == 12
    # the other way round: the same record, oriented as asked
    back = CliRunner().invoke(
        app, ["models", "compare", "toy@2", "toy@1", "-w", str(shadow_ws.root), "--json"]
    )
    assert json.loads(back.stdout)["shadow"]["confidence"]["b"] == hist
    text = CliRunner().invoke(
        app, ["models", "compare", MODEL, CHALLENGER, "-w", str(shadow_ws.root)]
    )
    assert text.exit_code == 0 and "agreement" in text.stdout and "#" in text.stdout


def test_a_stalled_challenger_drops_and_counts(shadow_ws, make_client, b64_image, monkeypatch):
    from autovision.serving.shadow import ShadowRunner

    release = threading.Event()
    original = ShadowRunner._predict

    def stalled(self, x):
        release.wait(20)
        return original(self, x)

    monkeypatch.setattr(ShadowRunner, "_predict", stalled)
    plain = make_client()
    shadowed = make_client(shadow=CHALLENGER, shadow_queue_limit=2)
    bodies = _bodies(b64_image, 5)
    for body in bodies:  # each answered at once: the challenger's queue never holds them up
        assert _predict(shadowed, body) == _predict(plain, body)
    runner = shadowed.app.state.server.shadow
    stats = runner.stats()
    assert stats["requests"] == 5
    assert stats["dropped_by_reason"] == {"queue_full": 4}
    metrics = shadowed.get("/metrics").text
    assert 'autovision_shadow_dropped_total{challenger="m-test-b",reason="queue_full"} 4' in metrics
    release.set()
    shadowed.__exit__(None, None, None)
    assert len(_records(shadow_ws)) == 2  # the one request the queue took


def test_shadow_rate_records_about_half(shadow_ws, make_client, b64_image):
    client = make_client(shadow=CHALLENGER, shadow_rate=0.5)
    body = _bodies(b64_image, 1)[0]
    for _ in range(40):
        _predict(client, body)
    runner = client.app.state.server.shadow
    client.__exit__(None, None, None)
    n = runner.stats()["requests"]
    assert 10 <= n <= 30
    assert len(_records(shadow_ws)) == 2 * n


def test_other_preprocessing_is_reprepared(served_ws, make_client, b64_image, tmp_path):
    path = _package(tmp_path / "m-wide", seed=2, input_size=48)
    served_ws.register_model(
        "m-wide", dataset="toy", dataset_version=1, task="single-label", path=path
    )
    client = make_client(shadow="m-wide")
    body = _bodies(b64_image, 1)[0]
    _predict(client, body)
    r = client.post("/v2/models/m-test/infer", json=_v2(body))
    assert r.status_code == 200, r.text
    client.__exit__(None, None, None)
    rows = _records(served_ws)
    assert len(rows) == 4

    import base64

    from autovision.models.package import ModelPackage
    from autovision.serving.inference import prepare_encoded

    wide = ModelPackage.load(path)
    payloads = [base64.b64decode(i["content"]) for i in body["instances"]]
    x = prepare_encoded(payloads, wide.preprocessing, 10**8)
    np.testing.assert_allclose(
        [r.challenger_probs for r in rows[:2]], wide.predict_array(x), atol=1e-5
    )


def _v2(body: dict) -> dict:
    contents = [i["content"] for i in body["instances"]]
    return {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [len(contents)], "data": contents}
        ]
    }


def test_an_unloadable_challenger_leaves_the_champion_serving(
    served_ws, make_client, b64_image, tmp_path
):
    broken = tmp_path / "broken"
    broken.mkdir()
    served_ws.register_model(
        "m-broken", dataset="toy", dataset_version=1, task="single-label", path=broken
    )
    client = make_client(shadow="m-broken")
    assert client.app.state.server.shadow is None
    _predict(client, _bodies(b64_image, 1)[0])


def test_serve_cli_refuses_an_unknown_challenger(served_ws):
    from autovision.cli.main import app

    out = CliRunner().invoke(app, ["serve", MODEL, "--shadow", "nope", "-w", str(served_ws.root)])
    assert out.exit_code == 1
    assert "nope" in out.output


def test_compare_on_split_measures_both_on_the_newer_ones_split(shadow_ws, image_bytes):
    from autovision.cli.main import app
    from autovision.data.dataset import Item
    from autovision.evaluation.api import evaluate_predictions
    from autovision.evaluation.predictions import predict_split
    from autovision.versions.compare import compare_on_split

    items = []
    for k in range(1, 10):
        sha = shadow_ws.blobs.put(image_bytes(k % 3, 24, k))
        label = LABELS[k % 3]
        items.append(Item(k, sha, f"{label}/{k}.png", (label,), "test", 24, 24, "PNG"))
    shadow_ws.create_version("toy", items, multi_label=False)
    got = compare_on_split(shadow_ws, "toy@1", "toy@2")
    assert got["dataset"] == "toy@1" and got["split"] == "test"
    for side, mid in (("a", MODEL), ("b", CHALLENGER)):
        want = evaluate_predictions(predict_split(shadow_ws, mid, dataset="toy@1"))
        assert got[side]["metrics"]["images"] == 9
        assert got[side]["metrics"]["accuracy"] == pytest.approx(want["accuracy"])
    diff = got["b"]["metrics"]["accuracy"] - got["a"]["metrics"]["accuracy"]
    assert got["difference"]["accuracy"] == pytest.approx(diff)
    assert "test_metrics" not in shadow_ws.model(MODEL)  # a comparison writes nothing
    out = CliRunner().invoke(
        app, ["models", "compare", "toy@1", "toy@2", "--split", "test", "-w", str(shadow_ws.root)]
    )
    assert out.exit_code == 0, out.output
    assert "test split of toy@1" in out.stdout and "accuracy" in out.stdout


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
@pytest.mark.parametrize("priority", ["idle", "nice"])
def test_the_challengers_thread_yields_the_cpu(shadow_ws, make_client, b64_image, priority):
    client = make_client(shadow=CHALLENGER, shadow_priority=priority)
    _predict(client, _bodies(b64_image, 1)[0])
    runner = client.app.state.server.shadow
    deadline = time.monotonic() + 10
    while runner.stats()["recorded"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    (worker,) = [t for t in threading.enumerate() if t.name == f"batcher-shadow-{CHALLENGER}-0"]
    if priority == "idle":
        assert os.sched_getscheduler(worker.native_id) == os.SCHED_IDLE
    else:
        assert os.getpriority(os.PRIO_PROCESS, worker.native_id) == 19
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER  # not the caller


def test_the_challenger_waits_while_the_champion_is_busy(shadow_ws, make_client, b64_image):
    client = make_client(shadow=CHALLENGER)
    runner = client.app.state.server.shadow
    busy = threading.Event()
    busy.set()
    runner._champion_busy = busy.is_set
    runner.max_defer_s = 30.0
    _predict(client, _bodies(b64_image, 1)[0])
    time.sleep(0.2)
    assert runner.stats()["recorded"] == 0  # deferred while the champion has work
    busy.clear()
    deadline = time.monotonic() + 10
    while runner.stats()["recorded"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.stats()["recorded"] == 2
    runner._champion_busy = lambda: True
    runner.max_defer_s = 0.05  # and never longer than max_defer_s
    _predict(client, _bodies(b64_image, 1)[0])
    deadline = time.monotonic() + 10
    while runner.stats()["recorded"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.stats()["recorded"] == 4


def test_the_challenger_is_pinned_and_says_so(shadow_ws, make_client, monkeypatch, caplog):
    import logging

    from autovision.cli.main import app
    from autovision.versions import store

    mv = store.resolve(shadow_ws, CHALLENGER)
    store.set_alias(shadow_ws, mv.name, mv.version, "challenger")
    ref = f"{mv.name}@challenger"
    with caplog.at_level(logging.INFO, logger="autovision.serving"):
        client = make_client(shadow=ref)
    want = f"shadow challenger {ref} pinned to {mv.ref} ({CHALLENGER}); a later move"
    assert want in caplog.text
    assert client.app.state.server.shadow.id == CHALLENGER
    monkeypatch.setattr("autovision.serving.app.serve", lambda *a, **kw: None)
    out = CliRunner().invoke(app, ["serve", MODEL, "--shadow", ref, "-w", str(shadow_ws.root)])
    assert out.exit_code == 0, out.output
    assert want in " ".join(out.output.split())
