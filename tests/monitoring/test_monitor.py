"""Drift through a real model package: the stored reference, ``monitor`` and its CLI, the
report, and the server's gauges."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from PIL import ImageEnhance, ImageFilter

from autovision.monitoring import monitor as monitor_mod
from autovision.monitoring.reference import REFERENCE_FILE, Reference, ensure_reference
from tests.monitoring.conftest import LABELS


@pytest.fixture
def images(make_image, monitored_ws):
    """``images(n)``: new images of the classes of the reference's test split (the importer
    keeps near-duplicate groups together, so a class may sit in train only)."""
    present = sorted({it.labels[0] for it in monitored_ws.dataset("toy").split("test")})
    classes = [LABELS.index(lab) for lab in present]

    def make(n: int, *, seed: int = 500, label=None):
        pick = [classes[i % len(classes)] if label is None else label for i in range(n)]
        return [make_image(c, 32, seed + i) for i, c in enumerate(pick)]

    return make


@pytest.fixture
def logged(monkeypatch):
    """``logged(records)``: what the prediction log answers ``monitor``."""

    def use(recs):
        monkeypatch.setattr(monitor_mod, "recent_records", lambda *a, **k: list(recs))

    return use


def test_reference_computed_once_and_stored_beside_the_package(monitored_ws):
    ref = ensure_reference(monitored_ws, "toy")
    path = monitored_ws.models_dir / "m-drift" / REFERENCE_FILE
    assert path.is_file() and len(ref) >= 30
    assert ref.sample.embeddings is not None and "brightness" in ref.sample.stats
    mtime = path.stat().st_mtime_ns
    again = ensure_reference(monitored_ws, "toy@1")
    assert path.stat().st_mtime_ns == mtime and len(again) == len(ref)
    assert Reference.load(path.parent).labels == ["cat", "dog", "fox"]


def test_no_drift_in_distribution_and_drift_when_darkened_or_blurred(
    monitored_ws, records, images, logged
):
    logged(records(images(60)))
    out = monitor_mod.monitor(monitored_ws, "toy")
    assert out["verdict"] == "no_drift", [t for t in out["tests"] if t["verdict"] == "drift"]

    dark = [ImageEnhance.Brightness(im).enhance(0.7) for im in images(60)]
    logged(records(dark))
    out = monitor_mod.monitor(monitored_ws, "toy")
    assert out["verdict"] == "drift" and out["drift"] is True
    assert "input:brightness" in {t["name"] for t in out["tests"] if t["verdict"] == "drift"}

    blurred = [im.filter(ImageFilter.GaussianBlur(2)) for im in images(60)]
    logged(records(blurred))
    assert monitor_mod.monitor(monitored_ws, "toy")["verdict"] == "drift"


def test_label_shift_detected(monitored_ws, records, images, logged):
    logged(records(images(60, label=0)))
    out = monitor_mod.monitor(monitored_ws, "toy")
    assert out["verdict"] == "drift"


def test_not_enough_data_on_five_images(monitored_ws, records, images, logged):
    logged(records(images(5)))
    out = monitor_mod.monitor(monitored_ws, "toy")
    assert out["verdict"] == "not_enough_data" and out["drift"] is None and out["samples"] == 5


def test_monitor_cli_json_and_report(monitored_ws, records, images, logged, tmp_path):
    from typer.testing import CliRunner

    from autovision.cli.main import app

    now = datetime.now(UTC)
    logged(records(images(40), now - timedelta(days=1)) + records(images(40, seed=900), now))
    report = tmp_path / "drift.html"
    res = CliRunner().invoke(
        app,
        ["monitor", "toy@default", "--last", "500", "--report", str(report), "--json",
         "--workspace", str(monitored_ws.root)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"drift", "verdict", "samples", "tests"} <= set(out)
    assert out["samples"] == 80 and out["drift"] is False
    assert [d["samples"] for d in out["daily"]] == [40, 40]
    t = out["tests"][0]
    assert {"name", "statistic", "p_value", "threshold", "verdict"} <= set(t)
    page = report.read_text()
    assert "Verdict per day" in page and "data:image/png;base64," in page


def test_monitor_refuses_since_and_last_together(monitored_ws):
    from autovision.errors import AutovisionError

    with pytest.raises(AutovisionError, match="not both"):
        monitor_mod.monitor(monitored_ws, "toy", since="1h", last=10)


def test_gauges_show_the_latest_verdicts(monitored_ws, records, images, monkeypatch):
    from autovision.serving.metrics import Metrics

    dark = [ImageEnhance.Brightness(im).enhance(0.6) for im in images(60)]
    monkeypatch.setattr(monitor_mod, "recent_records", lambda *a, **k: records(dark))
    watcher = monitor_mod.DriftWatcher(monitored_ws, lambda: {"toy": "m-drift"}, 900)
    metrics = Metrics()
    watcher.register(metrics)
    watcher.run_once()
    text = metrics.render()
    assert 'autovision_drift{model="toy",test="overall"} 1' in text
    assert 'autovision_drift{model="toy",test="input:brightness"} 1' in text
    assert 'autovision_drift_p_value{model="toy",test="label"}' in text


def test_server_registers_the_gauges_unless_off(monitored_ws, tiny_package):
    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app
    from autovision.serving.settings import ServerSettings

    for every, expected in ((900.0, True), (0.0, False)):
        settings = ServerSettings(allowed_hosts=["testserver"], monitor_every_s=every)
        with TestClient(create_app(monitored_ws, ["m-drift"], settings=settings)) as client:
            state = client.app.state.server
            assert (state.drift is not None) is expected
            assert ("# HELP autovision_drift " in client.get("/metrics").text) is expected
        assert state.drift is None or not state.drift._thread.is_alive()


def test_monitor_reads_the_prediction_log(monitored_ws, records, images):
    """Through the real table: the newest --last records of that model version only."""
    from autovision.monitoring.log import new_prediction_id
    from autovision.workspace.db import PredictionLogRow

    dark = [ImageEnhance.Brightness(im).enhance(0.6) for im in images(40)]
    with monitored_ws.Session() as s:
        for model_id, recs in (("m-drift", records(dark)), ("m-other", records(images(40)))):
            for r in recs:
                s.add(
                    PredictionLogRow(
                        id=new_prediction_id(),
                        model_id=model_id,
                        name="toy",
                        probs=r["probs"],
                        embedding=r["embedding"],
                        stats=r["stats"],
                    )
                )
        s.commit()
    out = monitor_mod.monitor(monitored_ws, "toy", last=500)
    assert out["samples"] == 40 and out["verdict"] == "drift"
    assert monitor_mod.monitor(monitored_ws, "toy", last=10)["verdict"] == "not_enough_data"
