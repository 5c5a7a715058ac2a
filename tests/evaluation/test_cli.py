"""``autovision evaluate`` through Typer's CliRunner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autovision.cli.main import app

runner = CliRunner()


def test_evaluate_json(known):
    res = runner.invoke(app, ["evaluate", "m-known", "--workspace", str(known.root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["accuracy"] == 0.9 and out["top_k_accuracy"] == 0.9
    assert out["confusion_matrix"]["matrix"][0] == [3, 1, 0, 0]
    assert out["metrics_path"].endswith("metrics.json")


def test_evaluate_readable_with_report_and_slices(known, tmp_path):
    report = tmp_path / "r.html"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "m-known",
            "-w",
            str(known.root),
            "--report",
            str(report),
            "--slice-by",
            "site",
            "--min-slice-support",
            "3",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "accuracy" in text and "0.900" in text
    assert "a -> b: 1" in text
    assert "Slices by site" in text and "flagged accuracy: gap 0.250 between north" in text
    assert f"Report: {report.resolve()}" in text.replace("\n", "")
    assert report.is_file()


def test_evaluate_errors_are_one_line(known):
    res = runner.invoke(app, ["evaluate", "nope", "-w", str(known.root)])
    assert res.exit_code == 1
    assert "no model 'nope'" in res.stderr
    res = runner.invoke(app, ["evaluate", "m-known", "-w", str(known.root), "--dataset", "zz"])
    assert res.exit_code == 1 and "no dataset named 'zz'" in res.stderr
