"""The demo (``make demo``) runs end to end: sample, import, report, train, evaluate, serve."""

from __future__ import annotations

import json

import pytest

from autovision import demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    ws_dir = tmp_path / "demo" / "workspace"
    assert demo.main(["--workspace", str(ws_dir), "--budget", "20s"]) == 0
    out = capsys.readouterr().out
    assert "HTML report" in out
    report = tmp_path / "demo" / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
    models = list((ws_dir / "models").glob("*/metrics.json"))
    assert len(models) == 1
    metrics = json.loads(models[0].read_text())
    assert metrics["accuracy"] > 0.5
    assert ":predict" in out
    assert "autovision console --workspace" in out
