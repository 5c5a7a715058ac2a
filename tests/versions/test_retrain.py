"""Retrain and promote: the gate, the history line, the CLI, and one real end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data.dataset import Item
from autovision.errors import ModelError, TrainingError
from autovision.security.audit import read_audit
from autovision.versions import retrain as retrain_mod
from autovision.versions import store
from autovision.versions.retrain import retrain

# linear heads on pretrained features: learnt exactly in a second, so "better" is certain
SPACE = {
    "backbones": ["efficientnet_lite0"],
    "modes": ["linear"],
    "sizes": {"efficientnet_lite0": [32]},
}
LABELS = ("a", "b")


def _items(ws, image_bytes, counts=(8, 3, 4), invert: bool = False) -> list[Item]:
    """Per label: train / validation / test images; ``invert`` swaps the train and
    validation labels (a model learns the opposite), test labels stay right."""
    items, k = [], 1
    for li, label in enumerate(LABELS):
        for split, n in zip(("train", "validation", "test"), counts, strict=True):
            for _ in range(n):
                sha = ws.blobs.put(image_bytes(li, 16, k))
                shown = LABELS[1 - li] if invert and split != "test" else label
                items.append(Item(k, sha, f"{label}/{k}.png", (shown,), split, 16, 16, "PNG"))
                k += 1
    return items


def _fake_metrics(value: float, task: str = "single-label") -> dict:
    return {
        "model": "x",
        "dataset": "pets@1",
        "split": "test",
        "task": task,
        "images": 8,
        "accuracy": value,
        "top_k": 2,
        "top_k_accuracy": 1.0,
        "log_loss": 0.5,
        "subset_accuracy": value,
        "hamming_loss": 0.1,
        "macro": {"precision": value, "recall": value, "f1": value},
        "micro": {"f1": value},
        "roc_auc": {"macro": value},
        "average_precision": {"macro": value},
        "calibration": {"ece": 0.1},
        "evaluated_at": "2026-01-01T00:00:00+00:00",
        "notes": [],
    }


@pytest.fixture
def gated(workspace, tmp_path, image_bytes, monkeypatch):
    """A workspace with ``pets@1`` (the incumbent) and training/evaluation replaced by fakes:
    ``figures["candidate"]`` / ``figures["incumbent"]`` are the test figures they report."""
    workspace.create_version("pets", _items(workspace, image_bytes), multi_label=False)
    workspace.register_model(
        "m-inc", dataset="pets", dataset_version=1, task="single-label", path=tmp_path / "inc"
    )
    figures = {"incumbent": 0.75, "candidate": 0.5}
    calls: list[dict] = []
    during: list = []  # callables run while the fake trains (another process moving aliases)

    def fake_train(ws, dataset_ref, **kw):
        calls.append({"dataset": dataset_ref, **kw})
        for hook in during:
            hook(ws)
        dv = ws.dataset(dataset_ref)
        mid = f"m-cand{len(calls)}"
        ws.register_model(
            mid,
            dataset=dv.name,
            dataset_version=dv.version,
            task="single-label",
            path=tmp_path / mid,
            name=kw["name"],
        )
        return SimpleNamespace(model=mid, run_id="r-1", to_dict=lambda: {"model": mid})

    def fake_evaluate(ws, model_id, dataset=None, **kw):
        return _fake_metrics(figures["candidate"])

    monkeypatch.setattr("autovision.search.run.train", fake_train)
    monkeypatch.setattr("autovision.evaluation.api.evaluate", fake_evaluate)
    monkeypatch.setattr(retrain_mod, "predictions_on_test", lambda ws, mid, dv: mid)
    monkeypatch.setattr(
        "autovision.evaluation.api.evaluate_predictions",
        lambda preds, **kw: _fake_metrics(figures["incumbent"]),
    )
    return SimpleNamespace(ws=workspace, figures=figures, calls=calls, during=during)


def test_a_worse_candidate_is_kept_out_and_the_history_says_why(gated) -> None:
    ws = gated.ws
    result = retrain(ws, "pets", budget="1m")
    assert not result.promoted and result.metric == "accuracy"
    assert (result.incumbent["version"], result.candidate["version"]) == (1, 2)
    assert (result.incumbent["metric"], result.candidate["metric"]) == (0.75, 0.5)
    assert gated.calls[0]["base_model"] == "m-inc" and gated.calls[0]["dataset"] == "pets@1"
    assert store.aliases(ws, "pets") == {"default": 1}  # production was not created
    assert any("no alias 'production' yet" in n for n in result.notes)
    (event,) = store.history(ws, "pets", "production")
    # judged against default's version 1 (production did not exist): that is its from
    assert (event.kind, event.from_version, event.to_version) == ("kept", 1, 2)
    assert "0.5000 < incumbent pets@1 0.7500" in event.reason
    assert event.details["rule"] == "candidate accuracy >= incumbent accuracy + 0"
    assert event.from_metrics["accuracy"] == 0.75 and event.to_metrics["accuracy"] == 0.5
    line = [e for e in read_audit(ws.audit_log_path) if e["action"] == "model.retrain"][-1]
    assert line["outcome"] == "ok" and line["promoted"] is False


def test_a_better_candidate_is_promoted_and_creates_the_alias(gated) -> None:
    ws = gated.ws
    gated.figures.update(candidate=0.8)
    result = retrain(ws, "pets", min_gain=0.05)  # 0.8 >= 0.75 + 0.05 despite float rounding
    assert result.promoted and result.alias_created
    assert store.aliases(ws, "pets") == {"default": 1, "production": 2}
    (event,) = store.history(ws, "pets", "production")
    assert (event.kind, event.from_version, event.to_version) == ("promote", None, 2)
    assert "0.8000 >= incumbent pets@1 0.7500 + min gain 0.05" in event.reason
    # the next retrain is judged against production, not default
    gated.figures.update(incumbent=0.8, candidate=0.79)
    again = retrain(ws, "pets")
    assert gated.calls[-1]["base_model"] == "m-cand1"
    assert not again.promoted and again.incumbent["version"] == 2
    assert [e.kind for e in store.history(ws, "pets", "production")] == ["promote", "kept"]


def test_an_alias_moved_during_the_retrain_is_not_overwritten(gated, tmp_path) -> None:
    ws = gated.ws
    ws.register_model(
        "m-two", dataset="pets", dataset_version=1, task="single-label", path=tmp_path / "two"
    )
    store.set_alias(ws, "pets", 1, "production")
    gated.during.append(lambda w: store.set_alias(w, "pets", 2, "production", reason="by hand"))
    gated.figures.update(candidate=0.9)  # passes the gate against version 1
    result = retrain(ws, "pets")
    assert not result.promoted
    assert "moved during the retrain from version 1 to version 2" in result.reason
    assert store.aliases(ws, "pets")["production"] == 2  # the hand move stands
    kinds = [(e.kind, e.from_version, e.to_version) for e in store.history(ws, "pets")]
    assert kinds[-1] == ("kept", 1, 3)


def test_an_alias_created_during_the_retrain_is_not_overwritten(gated, tmp_path) -> None:
    ws = gated.ws
    gated.during.append(lambda w: store.set_alias(w, "pets", 1, "production"))
    gated.figures.update(candidate=0.9)
    result = retrain(ws, "pets")
    assert not result.promoted and not result.alias_created
    assert "was created during the retrain (naming version 1)" in result.reason
    assert store.aliases(ws, "pets")["production"] == 1


def test_set_alias_expect_version(gated) -> None:
    ws = gated.ws
    with pytest.raises(store.AliasMoved, match="names no version, not the expected version 1"):
        store.set_alias(ws, "pets", 1, "production", expect_version=1)
    store.set_alias(ws, "pets", 1, "production", expect_version=store.ABSENT)
    with pytest.raises(store.AliasMoved, match="names version 1, not the expected no version"):
        store.set_alias(ws, "pets", 1, "production", expect_version=store.ABSENT)


def test_multi_label_compares_macro_f1(gated, monkeypatch) -> None:
    real = store.resolve
    monkeypatch.setattr(
        store, "resolve", lambda ws, ref: replace(real(ws, ref), task="multi-label")
    )
    gated.figures.update(candidate=0.9)
    result = retrain(gated.ws, "pets")
    assert result.metric == "macro_f1" and result.promoted


def test_refusals(gated, workspace) -> None:
    with pytest.raises(ModelError, match="no model named 'nope'"):
        retrain(workspace, "nope")
    with pytest.raises(ModelError, match="invalid alias"):
        retrain(workspace, "pets", alias="Prod")
    items = [replace(it, split="train") for it in workspace.dataset("pets").items]
    workspace.create_version("pets", items, multi_label=False)
    with pytest.raises(TrainingError, match="no labelled test images"):
        retrain(workspace, "pets")
    assert gated.calls == []


def test_cli_json(gated) -> None:
    ws = gated.ws
    res = CliRunner().invoke(app, ["retrain", "pets", "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"name", "alias", "incumbent", "candidate", "metric", "min_gain"} <= set(out)
    assert (out["promoted"], out["metric"], out["alias"]) == (False, "accuracy", "production")
    assert {k: out["incumbent"][k] for k in ("id", "version", "metric")} == {
        "id": "m-inc",
        "version": 1,
        "metric": 0.75,
    }
    assert out["reason"].startswith("kept: candidate pets@2")
    res = CliRunner().invoke(app, ["retrain", "pets", "-w", str(ws.root), "--min-gain", "-0.5"])
    assert res.exit_code == 0, res.output
    assert "promoted: candidate pets@3" in res.stdout


def test_incumbent_without_a_new_label_counts_those_images_wrong(
    workspace, image_bytes, monkeypatch
) -> None:
    """Evaluated on a dataset version that grew a label, the incumbent is not refused."""
    from autovision.evaluation.api import evaluate_predictions

    class Package:
        labels = ["a", "b"]
        task = "single-label"
        thresholds = None

        def predict_proba(self, images):
            return np.tile([[0.9, 0.1]], (len(images), 1))

        def decide(self, probs):
            return [[int(np.argmax(p))] for p in probs]

    items = _items(workspace, image_bytes)
    extra = [replace(items[-1], id=99, labels=("c",))]
    dv = workspace.create_version("pets", items + extra, multi_label=False)
    workspace.register_model(
        "m-old", dataset="pets", dataset_version=1, task="single-label", path=workspace.root
    )
    monkeypatch.setattr("autovision.evaluation.predictions.load_package", lambda path: Package())
    preds = retrain_mod.predictions_on_test(workspace, "m-old", dv)
    assert preds.labels == ["a", "b", "c"] and "count as wrong: c" in preds.notes[0]
    result = evaluate_predictions(preds)
    assert result["images"] == 9 and result["accuracy"] == pytest.approx(4 / 9)


@pytest.mark.slow
def test_end_to_end_retrain_promotes_the_better_version(workspace, image_bytes, monkeypatch):
    """Real runs: the incumbent learnt inverted labels, the candidate trains on right ones
    (from the incumbent) and wins on the shared test split; then a candidate trained on
    inverted labels again loses to it and production stays."""
    from autovision.search.run import train

    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    ws = workspace
    ws.create_version("pets", _items(ws, image_bytes, invert=True), multi_label=False)
    first = train(ws, "pets", trials=1, name="pets")
    ws.create_version("pets", _items(ws, image_bytes), multi_label=False, parent_version=1)

    result = retrain(ws, "pets", trials=1, budget="2m")
    assert result.dataset == "pets@2" and result.incumbent["id"] == first.model
    assert result.candidate["metric"] > result.incumbent["metric"], result.reason
    assert result.promoted and store.aliases(ws, "pets")["production"] == 2
    cand = store.resolve(ws, "pets@production")
    assert cand.info["base_model"] == first.model and cand.test_metrics["dataset"] == "pets@2"
    assert cand.test_metrics["accuracy"] == result.candidate["metric"]

    # a candidate taught the opposite labels (its test split is the same, labels right) loses
    ws.create_version("pets", _items(ws, image_bytes, invert=True), multi_label=False)
    kept = retrain(ws, "pets", trials=1)
    assert kept.dataset == "pets@3" and kept.incumbent["version"] == 2
    assert kept.candidate["metric"] < kept.incumbent["metric"] and not kept.promoted
    assert store.aliases(ws, "pets")["production"] == 2
    events = store.history(ws, "pets", "production")
    assert [(e.kind, e.from_version, e.to_version) for e in events] == [
        ("promote", None, 2),
        ("kept", 2, 3),
    ]
    for event, r in zip(events, (result, kept), strict=True):
        assert f"{r.candidate['metric']:.4f}" in event.reason
        assert f"{r.incumbent['metric']:.4f}" in event.reason
        assert event.details["candidate"]["metric"] == r.candidate["metric"]


def test_a_test_split_holding_the_incumbents_training_images_is_noted(gated) -> None:
    ws = gated.ws
    moved = [
        replace(it, split="test") if it.split == "train" else it for it in ws.dataset("pets").items
    ]
    ws.create_version("pets", moved, multi_label=False)
    result = retrain(ws, "pets")
    assert result.dataset == "pets@2"
    assert any("16 test images of pets@2 were training" in n for n in result.notes)


def test_exclude_issues_are_passed_through_and_kept_from_the_incumbent(gated, tmp_path) -> None:
    ws = gated.ws
    retrain(ws, "pets", exclude_issues="label_issues,outliers")
    assert gated.calls[-1]["exclude_issues"] == "label_issues,outliers"
    retrain(ws, "pets")  # the incumbent (pets@1) was trained on everything: nothing left out
    assert gated.calls[-1]["exclude_issues"] is None
    # an incumbent trained with --exclude-issues: its retrain keeps leaving them out
    excluded = {"issues": ["label_issues"], "images": 3, "ids": [1, 2, 3]}
    clean = ws.register_model(
        "m-clean",
        dataset="pets",
        dataset_version=1,
        task="single-label",
        path=tmp_path / "clean",
        info={"excluded": excluded},
        name="pets",
    )
    store.set_alias(ws, "pets", clean.version, "production")
    retrain(ws, "pets")
    assert gated.calls[-1]["exclude_issues"] == ["label_issues"]
    retrain(ws, "pets", exclude_issues="")  # explicitly none
    assert gated.calls[-1]["exclude_issues"] is None
    line = [e for e in read_audit(ws.audit_log_path) if e["action"] == "model.retrain"][-1]
    assert line["exclude_issues"] == ""


def test_cli_exclude_issues(gated) -> None:
    ws = gated.ws
    args = ["retrain", "pets", "-w", str(ws.root), "--json"]
    res = CliRunner().invoke(app, [*args, "--exclude-issues", "label_issues"])
    assert res.exit_code == 0, res.output
    assert gated.calls[-1]["exclude_issues"] == "label_issues"
    res = CliRunner().invoke(app, [*args, "--exclude-issues", "none"])
    assert res.exit_code == 0, res.output
    assert gated.calls[-1]["exclude_issues"] is None
    res = CliRunner().invoke(app, [*args, "--exclude-issues", "typo"])
    assert res.exit_code != 0 and "unknown issue typo" in res.output
