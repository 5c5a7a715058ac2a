"""``autovision dataset check``: JSON keys, readable tables."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autovision.cli.main import app

runner = CliRunner()


def test_check_json_and_tables(workspace, planted) -> None:
    p = planted()
    args = ["dataset", "check", p.ds.ref, "--label-issues", "--workspace", str(workspace.root)]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"dataset", "version", "seconds", "embedding", "label_issues", "label_issues_test",
            "outliers", "content_duplicates"} <= set(out)  # fmt: skip
    assert set(p.flips) <= {e["id"] for e in out["label_issues"]}
    assert set(out["label_issues"][0]) >= {"id", "source", "split", "label", "suggested", "score"}
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "likely label error(s) in train/validation" in res.stdout
    assert "likely label error(s) in the test split" in res.stdout
    flip = out["label_issues"][0]
    assert f"{flip['label']} -> {flip['suggested']}" in res.stdout


def test_check_errors_are_one_line(workspace) -> None:
    res = runner.invoke(app, ["dataset", "check", "nope", "--workspace", str(workspace.root)])
    assert res.exit_code == 1 and "no dataset named 'nope'" in res.output
