"""Label issues: planted flips are found, ranked worst first, with the true class suggested;
test-split flips are reported apart; the multi-label form works."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.checks.embeddings import dataset_embeddings
from autovision.checks.label_issues import find_label_issues, fold_assignment


def test_planted_flips_are_found_worst_first_with_the_true_label_suggested(
    workspace, planted
) -> None:
    p = planted()
    emb = dataset_embeddings(workspace, p.ds)
    found = find_label_issues(p.ds, emb.items, emb.emb)
    assert found["checked"] + found["checked_test"] == len(p.ds.items)
    assert not found["multi_label"] and found["folds"] == 5
    issues = found["label_issues"]
    flagged = {e["id"]: e for e in issues}
    assert set(p.flips) <= set(flagged)
    assert len(issues) <= len(p.flips) + 1  # a clean image is rarely flagged
    for i, true in p.flips.items():
        assert flagged[i]["suggested"] == true and flagged[i]["label"] != true
        assert flagged[i]["score"] < 0.5 and flagged[i]["suggested_score"] > 0.5
    scores = [e["score"] for e in issues]
    assert scores == sorted(scores)
    assert {e["split"] for e in issues} <= {"train", "validation"}
    entry = issues[0]
    assert set(entry) == {"id", "source", "split", "label", "suggested", "score", "suggested_score"}
    test = {e["id"]: e for e in found["label_issues_test"]}
    assert set(p.test_flips) <= set(test) and not set(test) & set(flagged)
    for i, true in p.test_flips.items():
        assert test[i]["suggested"] == true and test[i]["split"] == "test"


def test_unlabeled_images_are_embedded_but_never_checked(workspace, planted) -> None:
    p = planted(flips=(0, 0, 0), unlabeled=3)
    emb = dataset_embeddings(workspace, p.ds)
    assert len(emb.items) == len(p.ds.items) and emb.emb.shape[0] == len(p.ds.items)
    found = find_label_issues(p.ds, emb.items, emb.emb)
    assert found["checked"] + found["checked_test"] == len(p.ds.items) - 3
    reported = {e["id"] for e in found["label_issues"] + found["label_issues_test"]}
    assert not reported & {it.id for it in p.ds.items if not it.labels}


def test_duplicate_groups_stay_in_one_fold() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    gid = np.arange(60)
    gid[[1, 2, 3]] = 1  # a group of three, label 0
    gid[[40, 25]] = 25  # a group across labels 1 and 2
    for seed in range(5):
        fold = fold_assignment(y, gid, 5, seed)
        assert len(set(fold[[1, 2, 3]])) == 1 and fold[40] == fold[25]
        assert sorted(np.bincount(fold)) == pytest.approx([12] * 5, abs=2)
    multi = (rng.random((60, 3)) < 0.4).astype(int)
    fold = fold_assignment(multi, gid, 5, 0)
    assert len(set(fold[[1, 2, 3]])) == 1 and fold[40] == fold[25] and len(set(fold)) == 5


def test_multi_label_flips_are_found(workspace, planted_multi) -> None:
    p = planted_multi()
    emb = dataset_embeddings(workspace, p.ds)
    found = find_label_issues(p.ds, emb.items, emb.emb)
    assert found["multi_label"]
    flagged = {e["id"]: e for e in found["label_issues"]}
    assert set(p.flips) <= set(flagged)
    assert len(flagged) <= len(p.flips) + 2
    for i, true in p.flips.items():
        assert sorted(flagged[i]["suggested"]) == true
        assert isinstance(flagged[i]["label"], list)
    scores = [e["score"] for e in found["label_issues"]]
    assert scores == sorted(scores)
