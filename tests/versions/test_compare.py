"""The statistics of `models compare` on hand-made shadow records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autovision.errors import ModelError
from autovision.versions.compare import (
    compare,
    compare_records,
    confidence_bin,
    label_key,
    parse_since,
)

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL


def _rec(rid: str, a: list[str], b: list[str], pa: float = 0.9, pb: float = 0.6) -> dict:
    return {"request_id": rid, "a_labels": a, "b_labels": b, "a_probs": [pa], "b_probs": [pb]}


def test_agreement_per_label_disagreements_and_histograms():
    records = [
        _rec("r1", ["cat"], ["cat"], 0.95, 0.55),
        _rec("r1", ["cat"], ["dog"], 0.85, 0.45),
        _rec("r2", ["cat"], ["dog"], 0.35, 1.0),
        _rec("r3", ["dog"], ["dog"], 0.05, 0.15),
        _rec("r4", ["dog"], ["cat"], 0.5, 0.5),
    ]
    got = compare_records(records)
    assert got["n"] == 5 and got["requests"] == 4
    assert got["agreed"] == 2 and got["agreement"] == pytest.approx(0.4)
    assert got["per_label"] == {
        "cat": {"n": 3, "agreed": 1, "agreement": pytest.approx(1 / 3)},
        "dog": {"n": 2, "agreed": 1, "agreement": 0.5},
    }
    assert got["disagreements"] == [
        {"a": "cat", "b": "dog", "count": 2, "examples": ["r1", "r2"]},
        {"a": "dog", "b": "cat", "count": 1, "examples": ["r4"]},
    ]
    assert got["confidence"]["bins"][0] == 0.0 and got["confidence"]["bins"][-1] == 1.0
    assert got["confidence"]["a"] == [1, 0, 0, 1, 0, 1, 0, 0, 1, 1]
    assert got["confidence"]["b"] == [0, 1, 0, 0, 1, 2, 0, 0, 0, 1]


def test_examples_are_distinct_and_at_most_five():
    records = [_rec(f"r{i // 2}", ["a"], ["b"]) for i in range(20)]
    (pair,) = compare_records(records)["disagreements"]
    assert pair["count"] == 20
    assert pair["examples"] == ["r0", "r1", "r2", "r3", "r4"]


def test_multi_label_keys_and_an_empty_record():
    assert label_key(["dog", "cat"]) == "cat+dog" == label_key(["cat", "dog"])
    assert label_key([]) == "(none)"
    got = compare_records([_rec("r", ["dog", "cat"], ["cat", "dog"]), _rec("s", [], ["cat"])])
    assert got["agreed"] == 1
    assert got["disagreements"][0]["a"] == "(none)"
    empty = compare_records([])
    assert empty["n"] == 0 and empty["agreement"] is None and empty["disagreements"] == []


def test_confidence_bins_edges():
    assert confidence_bin([0.0]) == 0
    assert confidence_bin([0.1]) == 1
    assert confidence_bin([0.2, 0.999]) == 9
    assert confidence_bin([1.0]) == 9


def test_since():
    now = datetime.now(UTC)
    assert parse_since(None) is None
    assert abs((now - parse_since("24h")) - timedelta(hours=24)) < timedelta(seconds=5)
    assert abs((now - parse_since("30m")) - timedelta(minutes=30)) < timedelta(seconds=5)
    with pytest.raises(ModelError, match="invalid --since 'yesterday'"):
        parse_since("yesterday")


def test_compare_reads_the_table_either_way_round_and_since(workspace, tmp_path):
    from autovision.workspace.db import ShadowRecordRow

    for mid in ("m-a", "m-b"):
        workspace.register_model(
            mid, dataset="toy", dataset_version=1, task="single-label", path=tmp_path / mid
        )
    old = datetime.now(UTC) - timedelta(days=3)

    def row(champion: str, challenger: str, la: str, lb: str, when=None) -> ShadowRecordRow:
        return ShadowRecordRow(
            time=when or datetime.now(UTC),
            request_id=f"{champion}-{la}-{lb}",
            name="toy",
            champion_id=champion,
            challenger_id=challenger,
            champion_probs=[0.9, 0.1],
            challenger_probs=[0.3, 0.7],
            champion_labels=[la],
            challenger_labels=[lb],
        )

    with workspace.Session.begin() as s:
        s.add_all(
            [
                row("m-a", "m-b", "cat", "cat"),
                row("m-a", "m-b", "cat", "dog"),
                row("m-b", "m-a", "dog", "cat"),  # B was the champion here
                row("m-a", "m-b", "dog", "dog", when=old),
                row("m-a", "m-x", "dog", "cat"),  # another pair: not counted
            ]
        )
    got = compare(workspace, "m-a", "m-b")
    assert got["n"] == 4 and got["a_champion_images"] == 3
    assert {(d["a"], d["b"]): d["count"] for d in got["disagreements"]} == {("cat", "dog"): 2}
    assert (
        got["confidence"]["a"][9] == 3 and got["confidence"]["a"][7] == 1
    )  # top-1 0.7 as challenger
    assert compare(workspace, "m-a", "m-b", since="1d")["n"] == 3
    none = compare(workspace, "m-a", "m-b", since=timedelta(seconds=-60))
    assert none["n"] == 0 and "no shadow records" in none["notes"][0]
