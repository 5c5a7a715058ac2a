"""``train --exclude-issues``: flagged images leave training and validation, never the test
split; the run's JSON, model.json and registry say what was left out; --resume keeps it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from autovision.checks.store import save_check
from autovision.cli.main import app
from autovision.errors import DatasetError
from autovision.evaluation import evaluate
from autovision.search import run as run_mod
from autovision.search import train
from autovision.search.state import RunState, list_runs

runner = CliRunner()


@pytest.fixture
def faulty(workspace, make_dataset, tiny_space):
    """tiny@2: 2 labels x (12 train, 4 validation, 4 test), plus one train image duplicated in
    train (exact duplicate: one copy goes) and one duplicated into test (the test copy is what
    dedupe would drop, and stays); a stored label-issue check flags two train/validation
    images and one test image. Returns ``(ds, {"label": [...], "dup": id, "test": id})``."""
    ds = make_dataset(labels=("a", "b"), counts=(12, 4, 4))
    train_items = ds.split("train")
    first = workspace.reserve_item_ids("tiny", 2)
    twin = replace(train_items[0], id=first, source="a/twin.png")
    leak = replace(train_items[1], id=first + 1, source="a/leak.png", split="test")
    ds = workspace.create_version("tiny", [*ds.items, twin, leak], multi_label=False)
    val = ds.split("validation")
    test = [it for it in ds.split("test") if it.id != leak.id]

    def entry(it, score):
        other = "b" if it.labels == ("a",) else "a"
        return {
            "id": it.id,
            "source": it.source,
            "split": it.split,
            "label": it.labels[0],
            "suggested": other,
            "score": score,
            "suggested_score": 1 - score,
        }

    save_check(
        workspace,
        ds,
        "label_issues",
        {
            "method": "test",
            "folds": 5,
            "checked": 33,
            "checked_test": 9,
            "multi_label": False,
            "label_issues": [entry(train_items[5], 0.01), entry(val[-1], 0.02)],
            "label_issues_test": [entry(test[0], 0.03)],
        },
    )
    return ds, {"label": [train_items[5].id, val[-1].id], "dup": twin.id, "test": test[0].id}


def _spy_prepare(monkeypatch) -> list:
    seen: list = []
    original = run_mod.prepare_data

    def spy(dv, **kw):
        data = original(dv, **kw)
        seen.append(data)
        return data

    monkeypatch.setattr(run_mod, "prepare_data", spy)
    return seen


def test_train_exclude_issues_leaves_the_test_split_alone(workspace, faulty, monkeypatch) -> None:
    ds, flagged = faulty
    seen = _spy_prepare(monkeypatch)
    res = runner.invoke(
        app,
        [
            "train",
            "tiny",
            "--trials",
            "1",
            "--exclude-issues",
            "label_issues,exact_duplicates",
            "--json",
            "--workspace",
            str(workspace.root),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    left_out = sorted([*flagged["label"], flagged["dup"]])
    assert out["excluded"] == {
        "issues": ["label_issues", "exact_duplicates"],
        "images": 3,
        "ids": left_out,
        "by_issue": {"label_issues": 2, "exact_duplicates": 1},
    }
    assert (out["dataset"], out["dataset_version"]) == ("tiny", 2)

    # train + validation shrank by exactly the flagged ids; the test split is the stored one
    (data,) = seen
    used = {it.id for it in (*data.train, *data.val)}
    stored = {it.id for it in ds.items if it.split in ("train", "validation")}
    assert used == stored - set(left_out)
    test_ids = {it.id for it in ds.split("test")}
    assert {it.id for it in data.dataset.split("test")} == test_ids
    assert flagged["test"] in test_ids

    result = evaluate(workspace, out["model"])
    assert result["dataset"] == "tiny@2" and result["images"] == len(test_ids) == 9

    meta = json.loads((workspace.models_dir / out["model"] / "model.json").read_text())
    assert meta["dataset"]["excluded"] == out["excluded"]
    assert meta["dataset"]["content_hash"] == ds.content_hash  # the stored version's
    assert meta["dataset"]["train_images"] + meta["dataset"]["validation_images"] == 30
    assert workspace.model(out["model"])["excluded"] == out["excluded"]


def test_train_readable_says_what_was_left_out(workspace, faulty) -> None:
    res = runner.invoke(
        app,
        [
            "train",
            "tiny",
            "--trials",
            "1",
            "--exclude-issues",
            "label_issues",
            "--workspace",
            str(workspace.root),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "left out 2 images (label_issues 2) from training and validation" in res.stdout


def test_a_missing_check_is_a_clear_error(workspace, faulty) -> None:
    with pytest.raises(DatasetError, match=r"`autovision dataset check tiny@2 --outliers` first"):
        train(workspace, "tiny", trials=1, exclude_issues=["outliers"])
    res = runner.invoke(
        app,
        [
            "train",
            "tiny",
            "--trials",
            "1",
            "--exclude-issues",
            "typo",
            "--workspace",
            str(workspace.root),
        ],
    )
    assert res.exit_code == 1 and "unknown issue typo" in res.output


def test_resume_keeps_what_was_left_out(workspace, faulty, monkeypatch) -> None:
    ds, flagged = faulty

    def crash(*a, **kw):
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        m.setattr(run_mod.Search, "run", crash)
        with pytest.raises(RuntimeError, match="killed"):
            train(workspace, "tiny", trials=1, exclude_issues="label_issues")
    (state,) = list_runs(workspace)
    assert state.status == "running" and state.exclude_issues == ["label_issues"]
    assert state.excluded["ids"] == sorted(flagged["label"])

    # the check is computed again meanwhile and flags something else: the run goes on as begun
    save_check(workspace, ds, "label_issues", {"label_issues": [], "label_issues_test": []})
    seen = _spy_prepare(monkeypatch)
    result = train(workspace, "tiny", resume=True)
    assert result.excluded == state.excluded
    (data,) = seen
    assert not {it.id for it in (*data.train, *data.val)} & set(flagged["label"])
    after = RunState.load(state.dir(workspace) / "state.json")
    assert after.status == "finished" and after.sessions == 2
    assert after.excluded == state.excluded


def test_without_exclude_issues_nothing_is_recorded(workspace, make_dataset, tiny_space) -> None:
    make_dataset(labels=("a", "b"), counts=(8, 3, 2))
    result = train(workspace, "tiny", trials=1)
    assert result.to_dict()["excluded"] is None
    meta = json.loads((result.path / "model.json").read_text())
    assert meta["dataset"]["excluded"] is None


@pytest.mark.slow
def test_exclude_issues_reuses_the_embeddings_of_the_full_run(
    workspace, faulty, monkeypatch
) -> None:
    """A linear trial after ``--exclude-issues`` embeds nothing a run on the whole version
    embedded already (the cache is keyed by the ordered items; rows match by id and hash)."""
    from autovision.search import linear

    space = {"backbones": ["efficientnet_lite0"], "modes": ["linear"]}
    monkeypatch.setenv(
        "AUTOVISION_SEARCH_SPACE", json.dumps({**space, "sizes": {"efficientnet_lite0": [32]}})
    )
    computed: list[int] = []
    original = linear.fill_embeddings

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        computed.append(out[2])
        return out

    monkeypatch.setattr(linear, "fill_embeddings", spy)
    train(workspace, "tiny", trials=1)
    assert computed and computed[0] > 0
    computed.clear()
    res = train(workspace, "tiny", trials=1, exclude_issues="label_issues")
    assert res.excluded["images"] == 2
    assert computed and all(n == 0 for n in computed)
