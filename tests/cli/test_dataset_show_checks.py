"""``autovision dataset show`` with stored model-based checks: label issues, test-split label
issues and outliers get their own tables; without them, a hint names `dataset check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from autovision.checks.store import save_check
from autovision.cli.main import app
from autovision.workspace import Workspace

runner = CliRunner()


def run(ws: Path, *args: str):
    return runner.invoke(app, ["dataset", *args, "--workspace", str(ws)])


def words(text: str) -> str:
    return " ".join(text.split())  # the console wraps long lines


def test_show_renders_the_stored_checks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(12):
        folder = src / ("cat" if i < 6 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    ws_path = tmp_path / "ws"
    assert run(ws_path, "import", "pets", str(src)).exit_code == 0
    res = run(ws_path, "show", "pets")
    assert res.exit_code == 0, res.output
    assert "Not checked yet" in res.stdout
    assert "autovision dataset check pets@1" in words(res.stdout)

    ws = Workspace(ws_path)
    ds = ws.dataset("pets")
    by_split = {s: [it for it in ds.items if it.split == s] for s in ("train", "test")}
    wrong, wrong_test = by_split["train"][0], by_split["test"][0]

    def entry(it, suggested: str, score: float) -> dict:
        return {"id": it.id, "source": it.source, "split": it.split, "label": it.labels[0],
                "suggested": suggested, "score": score, "suggested_score": 0.8}  # fmt: skip

    other = {"cat": "dog", "dog": "cat"}
    save_check(ws, ds, "label_issues", {
        "method": "cleanlab confident learning", "folds": 5, "checked": 10, "checked_test": 2,
        "multi_label": False,
        "label_issues": [entry(wrong, other[wrong.labels[0]], 0.012)],
        "label_issues_test": [entry(wrong_test, other[wrong_test.labels[0]], 0.034)],
    })  # fmt: skip
    outlier = by_split["train"][1]
    save_check(ws, ds, "outliers", {
        "method": "knn", "k": 10, "threshold": 0.5, "checked": 12,
        "outliers": [{"id": outlier.id, "score": 0.789}],
        "ranking": [{"id": outlier.id, "score": 0.789}],
    })  # fmt: skip

    res = run(ws_path, "show", "pets")
    assert res.exit_code == 0, res.output
    text = words(res.stdout)
    assert "Likely label errors (train and validation)" in text
    assert f"{wrong.labels[0]} -> {other[wrong.labels[0]]}" in text and "0.012" in text
    assert "Likely label errors in the test split" in text and "0.034" in text
    assert "Outliers" in text and "0.789" in text
    assert "Not checked yet: content_duplicates" in text

    report = json.loads(run(ws_path, "show", "pets", "--json").stdout)
    assert [e["id"] for e in report["issues"]["label_issues"]] == [wrong.id]
    assert [e["id"] for e in report["issues"]["outliers"]] == [outlier.id]
    assert report["summary"]["label_issues_test"] == 1
    assert set(report["checks"]) == {"label_issues", "outliers"}
