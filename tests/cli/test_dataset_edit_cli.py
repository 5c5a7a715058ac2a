"""``dataset exclude --issues label_issues`` and ``dataset relabel --accept-suggestions``
on a stored label-issue check, through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autovision.checks.store import save_check
from autovision.cli.main import app
from autovision.data.dataset import Item

runner = CliRunner()


def run(ws, *args: str):
    return runner.invoke(app, ["dataset", *args, "--workspace", str(ws.root)])


@pytest.fixture
def checked(workspace, image_bytes):
    """leaves@1: 12 images (a/b, train 4 + validation 1 + test 1 each) and a stored label-issue
    check: ids 1 (score 0.9) and 2 (0.4) in train, 6 (0.8) in test."""
    items, k = [], 1
    for li, label in enumerate(("a", "b")):
        for split in ("train",) * 4 + ("validation", "test"):
            sha = workspace.blobs.put(image_bytes(li, 16, k))
            items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 16, 16, "PNG"))
            k += 1
    ds = workspace.create_version("leaves", items, multi_label=False)

    def entry(i: int, score: float) -> dict:
        it = ds.by_id()[i]
        return {
            "id": i,
            "source": it.source,
            "split": it.split,
            "label": "a",
            "suggested": "b",
            "score": 0.1,
            "suggested_score": score,
        }

    save_check(
        workspace,
        ds,
        "label_issues",
        {
            "method": "test",
            "folds": 5,
            "checked": 10,
            "checked_test": 2,
            "multi_label": False,
            "label_issues": [entry(1, 0.9), entry(2, 0.4)],
            "label_issues_test": [entry(6, 0.8)],
        },
    )
    return workspace


def test_relabel_accept_suggestions(checked) -> None:
    res = run(checked, "relabel", "leaves", "--accept-suggestions", "--min-score", "0.3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["version"], out["parent_version"], out["relabeled"]) == (2, 1, [1, 2])
    assert [(s["id"], s["from"], s["to"]) for s in out["suggestions"]] == [
        (1, "a", "b"),
        (2, "a", "b"),
    ]
    assert checked.dataset("leaves@2").params["relabeled"] == [1, 2]

    res = run(checked, "relabel", "leaves@1", "--accept-suggestions", "--include-test")
    assert res.exit_code == 0, res.output
    assert "leaves@3" in res.stdout and "relabeled 2 images" in res.stdout  # 1 and 6
    assert checked.dataset("leaves@3").params["relabeled"] == [1, 6]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --file or --accept-suggestions"),
        (("--file", "x.csv", "--accept-suggestions"), "give either --file or --accept-suggestions"),
        (("--file", "x.csv", "--min-score", "0.2"), "go with --accept-suggestions"),
        (("--accept-suggestions", "--min-score", "1.5"), "between 0 and 1"),
    ],
)
def test_relabel_usage_errors(checked, args, message) -> None:
    res = run(checked, "relabel", "leaves", *args)
    assert res.exit_code == 2 and message in res.output


def test_exclude_label_issues_and_a_missing_check(checked) -> None:
    res = run(checked, "exclude", "leaves", "--issues", "label_issues", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["excluded"] == [1, 2]
    assert checked.dataset("leaves@2").params["excluded_issues"] == {"label_issues": [1, 2]}
    res = run(checked, "exclude", "leaves", "--issues", "outliers")  # leaves@2: never checked
    assert res.exit_code == 1
    assert "run `autovision dataset check leaves@2 --outliers` first" in res.output
