"""The serving recorder: exact counts and percentiles from known latencies, CPU shared by
images, records flushed periodically and at shutdown, through the real server."""

from __future__ import annotations

import random
import time

import pytest

from autovision.usage.records import ServeRecorder, bucket, bucket_value, read_records
from autovision.usage.report import usage_report

from .conftest import MODEL

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def test_known_latencies_give_exact_counts_and_percentiles(workspace) -> None:
    rec = ServeRecorder(workspace, flush_s=3600)
    for ms in range(100, 0, -1):  # 1..100 ms, any order
        rec.observe("m-a", 2, ms / 1000)
    for _ in range(50):
        rec.observe("m-b", 1, 0.010)
    out = {d["model"]: d for d in rec.flush()}
    a, b = out["m-a"], out["m-b"]
    assert (a["requests"], a["predictions"]) == (100, 200)
    assert (b["requests"], b["predictions"]) == (50, 50)
    assert (a["p50_ms"], a["p99_ms"]) == (50.0, 99.0)  # nearest rank: observed values
    assert (b["p50_ms"], b["p99_ms"]) == (10.0, 10.0)
    assert a["latency_exact"] and b["latency_exact"]
    # the window's CPU is shared by images: 200 of 250 and 50 of 250
    assert a["cpu_share"] == pytest.approx(0.8) and b["cpu_share"] == pytest.approx(0.2)
    assert a["cpu_s"] + b["cpu_s"] == pytest.approx(a["cpu_s_window"], abs=2e-4)
    assert a["cpu_s_per_1000"] == pytest.approx(a["cpu_s"] / 200 * 1000, abs=1e-3)
    assert sum(a["latency_hist"]["counts"].values()) == 100
    assert {r["subject"] for r in read_records(workspace, "serve")} == {"m-a", "m-b"}
    assert rec.flush() == []  # an empty window writes nothing


def test_a_shadow_challengers_cpu_is_its_own_not_the_champions() -> None:
    from datetime import UTC, datetime, timedelta

    from autovision.usage.records import Snapshot, _records, _Window

    w = _Window()
    w.add(10, 0.01, random.Random(0), 8)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    start, end = Snapshot(0, 1.0, 0.0, 0, 0), Snapshot(1, 3.0, 0.0, 0, 0)  # 2 CPU s in all
    out = dict(
        _records({"m-champ": w}, t0, t0 + timedelta(seconds=1), start, end, {"m-b": [0.5, 10, 2]})
    )
    champ, shadow = out["m-champ"], out["m-b"]
    assert champ["cpu_s"] == pytest.approx(1.5) and champ["cpu_s_shadow"] == pytest.approx(0.5)
    assert shadow["shadow"] is True and shadow["cpu_s"] == pytest.approx(0.5)
    assert (shadow["predictions"], shadow["requests"], shadow["cpu_s_per_1000"]) == (10, 2, 50.0)


def test_server_records_the_shadow_challenger_apart(
    served_ws, make_client, b64_image, tmp_path
) -> None:
    from autovision.usage.records import read_records

    served_ws.register_model(
        "m-shadow",
        dataset="toy",
        dataset_version=1,
        task="single-label",
        path=served_ws.model_path(MODEL),
    )
    client = make_client(shadow="m-shadow", usage_flush_s=3600)
    body = {"instances": [{"content": b64_image()}]}
    for _ in range(5):
        assert client.post(f"/v1/models/{MODEL}:predict", json=body).status_code == 200
    client.__exit__(None, None, None)  # flushes the window
    recs = {r["subject"]: r["data"] for r in read_records(served_ws, "serve")}
    assert recs["m-shadow"]["shadow"] is True and recs["m-shadow"]["predictions"] == 5
    assert recs["m-shadow"]["cpu_s"] > 0
    assert recs[MODEL]["cpu_s_shadow"] == pytest.approx(recs["m-shadow"]["cpu_s"], abs=2e-4)
    rows = {r["model"]: r for r in usage_report(served_ws).serve}
    assert rows["m-shadow"]["shadow"] and not rows[MODEL]["shadow"]


def test_report_merges_windows(workspace) -> None:
    rec = ServeRecorder(workspace, flush_s=3600)
    for ms in range(1, 51):
        rec.observe("m-a", 1, ms / 1000)
    first = rec.flush()[0]
    for ms in range(51, 101):
        rec.observe("m-a", 3, ms / 1000)
    second = rec.flush()[0]
    (row,) = usage_report(workspace, "1h").serve
    assert row["windows"] == 2 and row["requests"] == 100 and row["predictions"] == 200
    cpu = first["cpu_s"] + second["cpu_s"]
    assert row["cpu_s_per_1000"] == pytest.approx(cpu / 200 * 1000, abs=1e-3)
    # from the merged histograms: within half a bucket (2.5 %) of the exact 50 and 99 ms
    assert row["p50_ms"] == pytest.approx(50.0, rel=0.025)
    assert row["p99_ms"] == pytest.approx(99.0, rel=0.025)


def test_the_reservoir_is_bounded(workspace) -> None:
    rec = ServeRecorder(workspace, flush_s=3600, keep=100)
    for i in range(1000):
        rec.observe("m-a", 1, (i % 100 + 1) / 1000)
    (d,) = rec.flush()
    assert d["requests"] == 1000 and not d["latency_exact"]
    assert 30 <= d["p50_ms"] <= 70


def test_histogram_buckets_hold_their_values() -> None:
    for s in (1e-5, 3e-4, 0.0123, 0.5, 7.0):
        assert bucket_value(bucket(s)) == pytest.approx(s, rel=0.025)


def test_server_records_every_request_and_flushes_at_shutdown(make_client, b64_image) -> None:
    client = make_client(usage_flush_s=3600)
    ws = client.app.state.server.ws
    n = 5
    for i in range(n):
        r = client.post(
            f"/v1/models/{MODEL}:predict",
            json={"instances": [{"content": b64_image(i % 3)}, {"content": b64_image(1)}]},
        )
        assert r.status_code == 200, r.text
    bad = client.post(f"/v1/models/{MODEL}:predict", json={"instances": []})
    assert bad.status_code == 400  # refused requests are not predictions
    assert read_records(ws, "serve") == []
    client.__exit__(None, None, None)  # shutdown: the last window is written

    (r,) = read_records(ws, "serve")
    d = r["data"]
    assert r["subject"] == MODEL and d["model"] == MODEL
    assert d["requests"] == n and d["predictions"] == 2 * n
    assert 0 < d["p50_ms"] <= d["p99_ms"]
    assert d["cpu_s"] >= 0 and d["cpu_share"] == 1.0


def test_server_flushes_every_usage_flush_s(make_client, b64_image) -> None:
    client = make_client(usage_flush_s=0.2)
    ws = client.app.state.server.ws
    r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"content": b64_image()}]})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while not read_records(ws, "serve") and time.monotonic() < deadline:
        time.sleep(0.05)
    (rec,) = read_records(ws, "serve")  # written while the server still runs
    assert rec["data"]["predictions"] == 1
