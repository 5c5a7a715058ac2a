"""``autovision predict``: batch prediction, --json, --resume, --split, and a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app

runner = CliRunner()


def _contents(*paths: Path) -> list[str]:
    return [
        json.loads(line)["instance"]["content"]
        for p in paths
        if p.exists()
        for line in p.read_text().splitlines()
    ]


def test_predict_folder_json_and_resume(model_ws, image_dir, tmp_path: Path) -> None:
    root = image_dir(n=5, broken=True)
    out = tmp_path / "preds.jsonl"
    errors = tmp_path / "errors.jsonl"
    args = ["predict", "m-test", str(root), "-o", str(out), "--errors", str(errors)]
    ws = ["--workspace", str(model_ws.root)]
    res = runner.invoke(app, [*args, *ws, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["predicted"] == 5 and summary["failed"] == 3
    assert summary["failures"] == {"unreadable": 1, "unsupported_format": 1, "empty_file": 1}
    assert summary["output"] == str(out) and summary["errors"] == str(errors)

    res = runner.invoke(app, [*args, *ws, "--resume"])
    assert res.exit_code == 0, res.output
    assert "already done" in res.stdout
    assert len(_contents(out)) == 5 and len(_contents(errors)) == 3


def test_predict_usage_errors(model_ws, tmp_path: Path) -> None:
    ws = ["--workspace", str(model_ws.root)]
    res = runner.invoke(app, ["predict", "m-test", "-o", str(tmp_path / "o.jsonl"), *ws])
    assert res.exit_code == 1 and "nothing to predict" in res.output
    res = runner.invoke(app, ["predict", "nope", str(tmp_path), "-o", "o.jsonl", *ws])
    assert res.exit_code == 1 and "no model 'nope'" in res.output


def test_predict_split_calls_evaluation(model_ws, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def write_split_predictions(ws, model_id, output, *, split, dataset):
        calls.append((ws.root, model_id, Path(output), split, dataset))
        return 7

    fake = types.ModuleType("autovision.evaluation.predictions")
    fake.write_split_predictions = write_split_predictions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "autovision.evaluation.predictions", fake)
    out = tmp_path / "test.jsonl"
    res = runner.invoke(
        app,
        ["predict", "m-test", "--split", "test", "--dataset", "colours@1", "-o", str(out)]
        + ["--workspace", str(model_ws.root), "--json"],
    )
    assert res.exit_code == 0, res.output
    assert calls == [(model_ws.root, "m-test", out, "test", "colours@1")]
    assert json.loads(res.stdout)["rows"] == 7
    res = runner.invoke(app, ["predict", "m-test", "x.png", "--split", "test", "-o", str(out)])
    assert res.exit_code == 1 and "not both" in res.output


@pytest.mark.slow
def test_resume_after_kill(package_dir: Path, image_dir, tmp_path: Path) -> None:
    """SIGKILL a running ``autovision predict``, then --resume: no duplicates, all done."""
    root = image_dir(n=600)
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "autovision.cli.main", "predict", str(package_dir), str(root)]
    cmd += ["-o", str(out), "--batch-size", "1", "--workers", "1", "--json"]
    env = {**os.environ, "AUTOVISION_WORKSPACE": str(tmp_path / "ws")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 0:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait(timeout=30)
    first = _contents(out)
    assert 0 < len(first) <= 600
    res = runner.invoke(
        app,
        ["predict", str(package_dir), str(root), "-o", str(out), "--resume", "--json"]
        + ["--workspace", str(tmp_path / "ws")],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == len(first)
    done = _contents(out)
    assert len(done) == 600 and max(Counter(done).values()) == 1


def test_ctrl_c_says_how_to_resume(model_ws, tmp_path: Path, monkeypatch) -> None:
    import autovision.predict

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(autovision.predict, "predict_batch", interrupted)
    out = tmp_path / "o.jsonl"
    res = runner.invoke(
        app, ["predict", "m-test", str(tmp_path), "-o", str(out), "-w", str(model_ws.root)]
    )
    assert res.exit_code == 130 and "--resume" in res.output
