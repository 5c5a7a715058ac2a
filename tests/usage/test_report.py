"""Storage bytes against the files on disk, and ``autovision usage`` (``--json`` and tables)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.usage.records import ServeRecorder, TrainRecorder
from autovision.usage.report import storage

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

runner = CliRunner()


def _files_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_storage_bytes_equal_the_sizes_on_disk(workspace, image_folder, serving_package) -> None:
    from autovision.data.importer import import_dataset

    src = image_folder(("cat", "dog"), per_label=4)
    import_dataset(workspace, "pets", src, workers=1)
    import_dataset(workspace, "pets", src, workers=1)  # a second version: the same blobs
    workspace.register_model(
        "m-1", dataset="pets", dataset_version=1, task="single-label", path=serving_package
    )
    st = storage(workspace)
    (ds,) = st["datasets"]
    blobs_dir = workspace.root / "blobs"
    on_disk = [p for p in blobs_dir.rglob("*") if p.is_file()]
    assert ds["dataset"] == "pets" and ds["blobs"] == len(on_disk) == 8
    assert ds["bytes"] == sum(p.stat().st_size for p in on_disk) == st["blobs_bytes"]
    assert ds["missing_blobs"] == 0
    (m,) = st["models"]
    assert m["ref"] == "pets@1"  # the named model version, not only the id
    assert m["bytes"] == _files_bytes(serving_package) > 0
    assert m["files"] == len([p for p in serving_package.rglob("*") if p.is_file()])
    assert st["prediction_logs"]["bytes"] == 0 and st["prediction_logs"]["records"] == 0
    assert st["total_bytes"] == ds["bytes"] + m["bytes"]

    os.remove(on_disk[0])
    assert storage(workspace)["datasets"][0]["missing_blobs"] == 1


def test_storage_counts_the_prediction_log_images(workspace, image_folder) -> None:
    import hashlib

    import numpy as np

    from autovision.data.importer import import_dataset
    from autovision.monitoring.log import Capture, Entry, PredictionLogger

    src = image_folder(("cat", "dog"), per_label=2)
    import_dataset(workspace, "pets", src, workers=1)
    shared = workspace.blobs.get(workspace.dataset("pets").items[0].sha256)
    own = b"\x89PNG not really, but bytes of a logged image"
    cap = Capture(images=[shared, own], sizes=[(1, 1), (1, 1)], stats=[{}, {}])
    entry = Entry(
        time=datetime.now(UTC),
        request_id="r",
        key_id=None,
        name="pets",
        model_id="m-1",
        version=1,
        route="predict",
        labels=["cat", "dog"],
        decide=lambda p: [[int(i)] for i in p.argmax(1)],
        probs=np.array([[0.6, 0.4], [0.3, 0.7]], dtype=np.float32),
        embedding=None,
        latency_ms=1.0,
        capture=cap,
    )
    PredictionLogger(workspace).write([entry])
    before = storage(workspace)
    logs = before["prediction_logs"]
    own_sha = hashlib.sha256(own).hexdigest()
    size = os.path.getsize(workspace.blobs.local_path(own_sha))
    assert (logs["records"], logs["images"], logs["shared_with_datasets"]) == (2, 2, 1)
    assert logs["bytes"] == size  # the shared image counts under the dataset
    assert before["total_bytes"] == before["datasets"][0]["bytes"] + size


def test_usage_json_shape_and_tables(workspace) -> None:
    with TrainRecorder(workspace, "pets@1") as rec:
        rec.note(model="m-1", trials=3, stop_reason="TRIALS_DONE", run_id="r-1")
    serve = ServeRecorder(workspace)
    for ms in (5, 10, 20):
        serve.observe("m-1", 2, ms / 1000)
    serve.close()

    res = runner.invoke(app, ["usage", "--json", "--workspace", str(workspace.root)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"since", "generated_at", "train", "serve", "storage"}
    assert out["since"] == "7d"
    (t,) = out["train"]
    assert {"wall_s", "cpu_s", "node_hours", "peak_rss_bytes", "gpu_s"} <= set(t)
    assert (t["trials"], t["stop_reason"], t["model"], t["run_id"]) == (
        3,
        "TRIALS_DONE",
        "m-1",
        "r-1",
    )
    (s,) = out["serve"]
    assert (s["model"], s["requests"], s["predictions"]) == ("m-1", 3, 6)
    assert (s["p50_ms"], s["p99_ms"]) == (10.0, 20.0)
    assert {"cpu_s_per_1000", "windows", "ref"} <= set(s)
    assert set(out["storage"]) == {
        "datasets",
        "models",
        "prediction_logs",
        "blobs_bytes",
        "total_bytes",
    }

    text = runner.invoke(app, ["usage", "--since", "all", "--workspace", str(workspace.root)])
    assert text.exit_code == 0, text.output
    for word in ("training runs", "served models", "storage", "TRIALS_DONE", "m-1"):
        assert word in text.stdout


def test_report_names_served_and_trained_models_by_version(workspace, serving_package) -> None:
    from autovision.usage.report import usage_report

    for model_id in ("m-1", "m-2"):
        workspace.register_model(
            model_id, dataset="pets", dataset_version=1, task="single-label", path=serving_package
        )
    with TrainRecorder(workspace, "pets@1") as rec:
        rec.note(model="m-2")
    serve = ServeRecorder(workspace)
    serve.observe("m-2", 1, 0.01)
    serve.observe("m-unknown", 1, 0.01)
    serve.close()
    report = usage_report(workspace)
    assert [t["ref"] for t in report.train] == ["pets@2"]
    assert {s["model"]: s["ref"] for s in report.serve} == {
        "m-2": "pets@2",
        "m-unknown": "m-unknown",
    }


def test_since_filters_and_bad_since_is_one_line(workspace) -> None:
    with TrainRecorder(workspace, "pets"):
        pass
    ws = ["--workspace", str(workspace.root)]
    assert json.loads(runner.invoke(app, ["usage", "--json", *ws]).stdout)["train"]
    from datetime import UTC, datetime, timedelta

    from autovision.usage.report import usage_report

    later = datetime.now(UTC) + timedelta(hours=2)
    assert usage_report(workspace, "1h", now=later).train == []
    assert len(usage_report(workspace, "3h", now=later).train) == 1
    bad = runner.invoke(app, ["usage", "--since", "soon", *ws])
    assert bad.exit_code == 1 and "invalid --since 'soon'" in bad.output
