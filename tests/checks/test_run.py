"""``check_dataset``: stores each kind, enriches outliers, keeps content pairs in one fold,
reports a budget that runs out."""

from __future__ import annotations

import pytest

from autovision.checks import run as run_mod
from autovision.checks.run import CheckBudgetError, check_dataset
from autovision.checks.store import load_checks


def test_label_issues_are_stored_and_loadable(workspace, planted) -> None:
    p = planted()
    stages: list[str] = []
    out = check_dataset(
        workspace,
        p.ds.ref,
        outliers=False,
        near_duplicates=False,
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert out["dataset"] == p.ds.name and out["version"] == p.ds.version
    assert out["embedding"]["model"] == "efficientnet_lite0"
    assert out["embedding"]["computed"] == len(p.ds.items)
    assert set(p.flips) <= {e["id"] for e in out["label_issues"]}
    assert out["outliers"] == [] and out["content_duplicates"] is None
    assert {"embedding", "label_issues"} <= set(stages)
    stored = load_checks(workspace, p.ds)
    assert set(stored) == {"label_issues"}
    assert stored["label_issues"]["label_issues"] == out["label_issues"]
    assert stored["label_issues"]["label_issues_test"] == out["label_issues_test"]
    assert stored["label_issues"]["computed_at"] and stored["label_issues"]["params"]["folds"] == 5
    again = check_dataset(workspace, p.ds.ref, outliers=False, near_duplicates=False)
    assert again["embedding"]["computed"] == 0  # cached
    audit = workspace.audit_log_path.read_text()
    assert '"action": "dataset.check"' in audit or '"action":"dataset.check"' in audit


def test_outliers_and_content_pairs_are_run_enriched_and_stored(
    workspace, planted, monkeypatch
) -> None:
    p = planted(flips=(1, 0, 0))
    ids = [it.id for it in p.ds.items]
    calls: dict[str, object] = {}

    def fake_outliers(emb, got_ids, **kw):
        calls["outliers"] = list(got_ids)
        ranking = [{"id": ids[5], "score": 2.0}, {"id": ids[6], "score": 0.5}]
        return {"method": "fake", "k": 3, "threshold": 1.0, "checked": len(got_ids),
                "outliers": ranking[:1], "ranking": ranking}  # fmt: skip

    def fake_pairs(emb, got_ids, *, emb_flipped=None, **kw):
        calls["pairs"] = emb_flipped is not None
        return {"method": "fake", "threshold": 0.9, "checked": len(got_ids),
                "pairs": [[ids[0], ids[1], 0.97]]}  # fmt: skip

    seen_groups: list = []
    real = run_mod.label_mod.find_label_issues

    def spy(*a, groups=None, **kw):
        seen_groups.extend(groups or [])
        return real(*a, groups=groups, **kw)

    monkeypatch.setattr(run_mod.outliers_mod, "find_outliers", fake_outliers)
    monkeypatch.setattr(run_mod.nd_mod, "content_pairs", fake_pairs)
    monkeypatch.setattr(run_mod.label_mod, "find_label_issues", spy)
    out = check_dataset(workspace, p.ds.ref, flipped=False)
    assert calls == {"outliers": ids, "pairs": False}
    item = p.ds.by_id()[ids[5]]
    assert out["outliers"] == [
        {"id": ids[5], "score": 2.0, "source": item.source, "split": item.split,
         "label": item.labels[0]}
    ]  # fmt: skip
    assert out["content_duplicates"]["pairs"] == [[ids[0], ids[1], 0.97]]
    assert any({ids[0], ids[1]} <= set(g) for g in seen_groups)  # one fold
    stored = load_checks(workspace, p.ds)
    assert set(stored) == {"label_issues", "outliers", "content_duplicates"}
    assert stored["outliers"]["ranking"][1]["source"] == p.ds.by_id()[ids[6]].source


def test_a_budget_that_runs_out_while_embedding_is_a_clear_error(
    workspace, planted, monkeypatch
) -> None:
    p = planted(flips=(0, 0, 0))
    monkeypatch.setattr(run_mod.time, "monotonic", lambda: 1e9)  # the deadline is past at once

    def late(*a, deadline=None, **kw):
        raise TimeoutError("embedding ran past the deadline")

    monkeypatch.setattr(run_mod, "dataset_embeddings", late)
    with pytest.raises(CheckBudgetError, match=r"budget of 1s .* run it again"):
        check_dataset(workspace, p.ds.ref, budget="1s", outliers=False, near_duplicates=False)
    assert load_checks(workspace, p.ds) == {}
