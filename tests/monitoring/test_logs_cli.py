"""``autovision logs list|export|purge`` over a log with two versions of one name."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.monitoring import log as plog
from autovision.security.audit import read_audit

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

runner = CliRunner()
LABELS = ["cat", "dog"]


def run(ws, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(ws.root)])


def js(ws, *args: str):
    res = run(ws, *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _entry(model_id: str, version: int, probs: list[float], age: timedelta) -> plog.Entry:
    return plog.Entry(
        time=datetime.now(UTC) - age,
        request_id=f"r-{model_id}",
        key_id=None,
        name="pets",
        model_id=model_id,
        version=version,
        route="predict",
        labels=LABELS,
        decide=lambda p: [[int(i)] for i in p.argmax(1)],
        probs=np.array([probs], dtype=np.float32),
        embedding=np.zeros((1, 4), dtype=np.float32),
        latency_ms=2.0,
        capture=None,
    )


@pytest.fixture
def logged(workspace, tmp_path):
    from autovision.versions.store import set_alias

    for mid in ("m-a", "m-b"):
        (tmp_path / mid).mkdir()
        workspace.register_model(
            mid, dataset="pets", dataset_version=1, task="single-label", path=tmp_path / mid
        )
    set_alias(workspace, "pets", 2, "production")
    logger = plog.PredictionLogger(workspace)
    logger.write(
        [
            _entry("m-a", 1, [0.9, 0.1], timedelta(hours=3)),
            _entry("m-a", 1, [0.55, 0.45], timedelta(minutes=30)),
            _entry("m-a", 1, [0.2, 0.8], timedelta(days=40)),
            _entry("m-b", 2, [0.4, 0.6], timedelta(minutes=10)),
            _entry("m-b", 2, [0.95, 0.05], timedelta(minutes=5)),
        ]
    )
    logger.close()
    return workspace


def test_logs_list_filters(logged) -> None:
    ws = logged
    out = js(ws, "logs", "list", "pets")
    assert out["total"] == 5 and len(out["predictions"]) == 5
    times = [p["time"] for p in out["predictions"]]
    assert times == sorted(times, reverse=True), "newest first"
    assert js(ws, "logs", "list", "pets@1")["total"] == 3
    assert js(ws, "logs", "list", "pets@production")["total"] == 2
    assert js(ws, "logs", "list", "pets", "--since", "1h")["total"] == 3
    dogs = js(ws, "logs", "list", "pets", "--label", "dog")
    assert dogs["total"] == 2 and {p["top_label"] for p in dogs["predictions"]} == {"dog"}
    low = js(ws, "logs", "list", "pets", "--below", "0.6")
    assert low["total"] == 1 and low["predictions"][0]["confidence"] == pytest.approx(0.55)
    assert len(js(ws, "logs", "list", "pets", "--limit", "2")["predictions"]) == 2
    text = run(ws, "logs", "list", "pets")
    assert text.exit_code == 0 and "5 of 5 prediction(s)" in text.stdout
    bad = run(ws, "logs", "list", "pets@9")
    assert bad.exit_code == 1 and "no version 9" in bad.output


def test_logs_export_writes_jsonl(logged, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    assert js(logged, "logs", "export", "pets@2", str(out)) == {"exported": 2, "output": str(out)}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["version"] for r in lines] == [2, 2]
    assert {"probs", "labels", "embedding", "stats", "image_sha256"} <= set(lines[0])


def test_logs_purge_is_audited(logged) -> None:
    assert js(logged, "logs", "purge", "--older-than", "30d")["records"] == 1
    assert js(logged, "logs", "list", "pets")["total"] == 4
    events = [e for e in read_audit(logged.audit_log_path) if e["action"] == "logs.purge"]
    assert events[-1]["outcome"] == "ok" and events[-1]["records"] == 1
    bad = run(logged, "logs", "purge", "--older-than", "later")
    assert bad.exit_code == 1 and "invalid duration 'later'" in bad.output
