"""The review queue: entry rule, margin order with classes interleaved, label / skip /
file, stats, client feedback ownership, and add-feedback's version with lineage."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autovision.cli.main import app
from autovision.data.dataset import Item
from autovision.monitoring import review as R
from autovision.security.audit import read_audit

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


@pytest.fixture(autouse=True)
def _cli_workspace(workspace, monkeypatch):
    monkeypatch.setenv("AUTOVISION_WORKSPACE", str(workspace.root))


runner = CliRunner()


def test_queue_is_low_confidence_by_margin_with_classes_interleaved(log_prediction, workspace):
    sure = log_prediction((0.9, 0.05, 0.05))
    cats = [log_prediction(p) for p in ((0.45, 0.3, 0.25), (0.42, 0.33, 0.25), (0.4, 0.38, 0.22))]
    dog = log_prediction((0.3, 0.4, 0.3))  # margin 0.1
    out = R.queue(workspace, "pets")
    ids = [it["id"] for it in out["items"]]
    assert sure not in ids and out["total"] == 4
    # cats by margin (0.02, 0.09, 0.15); the dog (0.1) comes second, not after every cat
    cat_margins = {c: it["margin"] for c in cats for it in out["items"] if it["id"] == c}
    assert ids[0] == min(cat_margins, key=cat_margins.get)
    assert ids[1] == dog
    assert [i for i in ids if i in cats] == sorted(cats, key=cat_margins.get) == cats[::-1]
    assert out["items"][0]["reason"] == "low_confidence"
    assert out["items"][0]["image_url"] == f"/admin/review/pets/{ids[0]}/image"


def test_interleave_round_robin():
    from types import SimpleNamespace as N

    rows = [N(id=f"a{i}", top_label="a", margin=i / 100, time=0) for i in range(5)]
    rows += [N(id="b0", top_label="b", margin=0.5, time=0)]
    assert [r.id for r in R.interleave(rows)] == ["a0", "b0", "a1", "a2", "a3", "a4"]


def test_threshold_per_model_name_and_outliers(log_prediction, workspace):
    mid = log_prediction((0.55, 0.25, 0.2))
    sure = log_prediction((0.95, 0.03, 0.02))
    assert R.queue(workspace, "pets")["total"] == 0
    r = runner.invoke(app, ["models", "set", "pets", "--review-below", "0.6", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["review_below"] == 0.6
    assert [it["id"] for it in R.queue(workspace, "pets")["items"]] == [mid]
    assert R.mark_outliers(workspace, [sure, "p-missing"]) == 1
    items = R.queue(workspace, "pets")["items"]
    assert {it["id"]: it["reason"] for it in items} == {mid: "low_confidence", sure: "flagged"}
    bad = runner.invoke(app, ["models", "set", "pets", "--review-below", "1.5"])
    assert bad.exit_code == 1 and "(0, 1]" in bad.output


def test_label_skip_and_unknown_label(log_prediction, workspace):
    a, b = log_prediction((0.4, 0.35, 0.25)), log_prediction((0.4, 0.3, 0.3))
    with pytest.raises(R.ReviewError, match="unknown label 'wolf'.*cat, dog, fox"):
        R.label(workspace, a, ["wolf"])
    with pytest.raises(R.ReviewError, match="one label"):
        R.label(workspace, a, ["cat", "dog"])
    with pytest.raises(R.PredictionNotFound):
        R.label(workspace, "p-nope", ["cat"])
    r = runner.invoke(app, ["review", "label", a, "dog", "--json"])
    assert r.exit_code == 0, r.output
    item = json.loads(r.output)
    assert item["review_status"] == "labeled" and item["review_labels"] == ["dog"]
    assert item["reviewer"]  # the local user
    assert runner.invoke(app, ["review", "skip", b]).exit_code == 0
    assert R.queue(workspace, "pets")["total"] == 0
    actions = [e["action"] for e in read_audit(workspace.audit_log_path)]
    assert "review.label" in actions and "review.skip" in actions


def test_label_file_reports_bad_rows_and_applies_the_rest(log_prediction, workspace, tmp_path):
    a, b, c = (log_prediction((0.4, 0.35, 0.25)) for _ in range(3))
    csv = tmp_path / "corrections.csv"
    csv.write_text(f"prediction_id,label\n{a},dog\n{b},wolf\np-nope,cat\n{c}\n")
    r = runner.invoke(app, ["review", "label", "--file", str(csv), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["applied"] == 1
    assert [e["line"] for e in out["errors"]] == [3, 4, 5]
    assert "wolf" in out["errors"][0]["message"]
    assert R.get(workspace, a).review_labels == ["dog"]


def test_stats(log_prediction, workspace):
    a, b, c = (log_prediction((0.4, 0.35, 0.25)) for _ in range(3))
    log_prediction((0.4, 0.35, 0.25))
    R.label(workspace, a, ["cat"])  # agrees with the model
    R.label(workspace, b, ["dog"])
    R.skip(workspace, c)
    r = runner.invoke(app, ["review", "stats", "pets", "--json"])
    out = json.loads(r.output)
    assert out["queued"] == 1 and out["labeled"] == 2 and out["skipped"] == 1
    assert out["by_label"] == {"cat": 1, "dog": 1}
    assert out["agreement"] == 0.5


def test_client_feedback_only_for_own_predictions(log_prediction, workspace):
    pid = log_prediction((0.9, 0.05, 0.05), key_id="k-alice", request_id="req-1")
    with pytest.raises(R.NotYourPrediction):
        R.add_client_feedback(workspace, "req-1", ["dog"], key_id="k-bob")
    with pytest.raises(R.PredictionNotFound):
        R.add_client_feedback(workspace, "req-1", ["dog"], instance=3, key_id="k-alice")
    R.add_client_feedback(workspace, "req-1", ["dog"], key_id="k-alice")
    [item] = R.queue(workspace, "pets")["items"]
    assert item["id"] == pid and item["reason"] == "feedback"
    assert item["feedback"]["labels"] == ["dog"] and item["feedback"]["key_id"] == "k-alice"


def _dataset(workspace, image_bytes):
    items, k = [], 1
    for li, label in enumerate(("cat", "dog", "fox")):
        for split in ("train", "train", "validation", "test"):
            sha = workspace.blobs.put(image_bytes(li, 24, 100 + k))
            items.append(Item(k, sha, f"{label}/{k}.png", (label,), split, 24, 24, "PNG"))
            k += 1
    workspace.create_version("pets", items, multi_label=False)
    return workspace.dataset("pets")


def test_add_feedback_lineage_splits_and_dedup(log_prediction, workspace, image_bytes):
    old = _dataset(workspace, image_bytes)
    a = log_prediction((0.4, 0.35, 0.25))
    b = log_prediction((0.4, 0.35, 0.25))
    dup = log_prediction((0.4, 0.35, 0.25))
    noimg = log_prediction((0.4, 0.35, 0.25), image=False)
    queued = log_prediction((0.4, 0.35, 0.25))  # not reviewed: never added
    for pid, lab in ((a, "dog"), (b, "fox"), (dup, "cat"), (noimg, "cat")):
        R.label(workspace, pid, [lab])
    # dup's image is already in the dataset
    from autovision.workspace.db import PredictionLogRow

    with workspace.Session.begin() as s:
        s.get(PredictionLogRow, dup).image_sha256 = old.items[0].sha256
    r = runner.invoke(app, ["dataset", "add-feedback", "pets", "--from", "pets", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["version"] == old.version + 1 and out["added"] == 2
    assert out["duplicates"] == 1 and out["no_image"] == 1
    new = workspace.dataset("pets")
    assert {it.id: it.split for it in old.items} == {
        it.id: it.split for it in new.items if it.id in {o.id for o in old.items}
    }
    added = [it for it in new.items if it.metadata.get("origin") == "feedback"]
    assert {it.metadata["feedback.prediction_id"] for it in added} == {a, b}
    one = next(it for it in added if it.metadata["feedback.prediction_id"] == a)
    assert one.split == "train" and one.labels == ("dog",)
    md = one.metadata
    assert md["feedback.model"] == "m-pets-1" and md["feedback.model_version"] == "1"
    assert md["feedback.predicted_labels"] == "cat" and md["feedback.labels"] == "dog"
    assert md["feedback.reviewer"] and md["feedback.time"]
    assert float(md["feedback.confidence"]) == pytest.approx(0.4)
    assert min(it.id for it in added) > max(it.id for it in old.items)
    assert queued not in {it.metadata["feedback.prediction_id"] for it in added}
    # again: nothing new, no version
    again = runner.invoke(app, ["dataset", "add-feedback", "pets", "--json"])
    assert json.loads(again.output)["added"] == 0
    assert workspace.dataset("pets").version == new.version
    show = runner.invoke(app, ["dataset", "show", "pets", "--json"])
    assert json.loads(show.output)["feedback_items"] == 2
    assert any(e["action"] == "dataset.add_feedback" for e in read_audit(workspace.audit_log_path))


def test_add_feedback_to_another_split(log_prediction, workspace, image_bytes):
    _dataset(workspace, image_bytes)
    R.label(workspace, log_prediction((0.4, 0.35, 0.25)), ["dog"])
    out = R.add_feedback(workspace, "pets", split="validation")
    assert out["added"] == 1
    [it] = [i for i in workspace.dataset("pets").items if i.metadata.get("origin")]
    assert it.split == "validation"
    with pytest.raises(Exception, match="unknown split"):
        R.add_feedback(workspace, "pets", split="holdout")


def test_multi_label_rule_is_a_band_around_each_threshold():
    from types import SimpleNamespace as N

    models = N(multi_label=lambda _m: True, thresholds=lambda _m: [0.5, 0.8])

    def row(*probs):
        return N(review_status=None, feedback=None, model_id="m", probs=list(probs), confidence=0)

    assert R._reason(row(0.95, 0.05), 0.5, models) is None  # both far from their thresholds
    assert R._reason(row(0.65, 0.05), 0.5, models) == "uncertain"  # 0.65 within 0.2 of 0.5
    assert R._reason(row(0.95, 0.61), 0.5, models) == "uncertain"  # 0.61 within 0.2 of 0.8
    assert R._reason(row(0.95, 0.59), 0.5, models) is None
