"""Splits: fractions, stratification, determinism, fixed ML_USE, groups kept together."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from autovision.data.split import SplitEntry, assign_splits, parse_fractions
from autovision.errors import DatasetError


def entries(counts: dict[str, int], start: int = 0) -> list[SplitEntry]:
    out, i = [], start
    for label, n in counts.items():
        for _ in range(n):
            out.append(SplitEntry(i, (label,) if label else ()))
            i += 1
    return out


def per_label(es: list[SplitEntry], splits: dict[int, str]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for e in es:
        for lab in e.labels or ("",):
            out.setdefault(lab, Counter())[splits[e.id]] += 1
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80/10/10", (0.8, 0.1, 0.1)),
        ("70/15/15", (0.7, 0.15, 0.15)),
        ("8/1/1", (0.8, 0.1, 0.1)),
        ((0.5, 0.5, 0), (0.5, 0.5, 0.0)),
    ],
)
def test_parse_fractions(spec, expected) -> None:
    assert parse_fractions(spec) == pytest.approx(expected)


@pytest.mark.parametrize("spec", ["80/20", "a/b/c", "-1/1/1", "0/0/0", (1, 2)])
def test_parse_fractions_rejects(spec) -> None:
    with pytest.raises(DatasetError, match="invalid split"):
        parse_fractions(spec)


def test_default_is_stratified_80_10_10() -> None:
    es = entries({"a": 100, "b": 50, "c": 20})
    res = assign_splits(es)
    got = per_label(es, res.splits)
    assert got["a"] == Counter(train=80, validation=10, test=10)
    assert got["b"] == Counter(train=40, validation=5, test=5)
    assert got["c"] == Counter(train=16, validation=2, test=2)
    assert res.conflicts == []


def test_other_fractions_and_zero_split() -> None:
    es = entries({"a": 40, "b": 40})
    got = per_label(es, assign_splits(es, fractions=(0.5, 0.5, 0.0)).splits)
    assert got["a"] == Counter(train=20, validation=20)
    assert got["b"] == Counter(train=20, validation=20)


def test_deterministic_for_a_seed() -> None:
    es = entries({"a": 30, "b": 30, "": 10})
    first = assign_splits(es, seed=3).splits
    assert assign_splits(es, seed=3).splits == first
    assert assign_splits(es, seed=4).splits != first


def test_small_classes_balance_globally_and_keep_one_in_train() -> None:
    es = entries({f"c{i}": 5 for i in range(40)} | {f"t{i}": 3 for i in range(10)})
    res = assign_splits(es)
    got = per_label(es, res.splits)
    assert all(c["train"] >= 1 for c in got.values())
    totals = Counter(res.splits.values())
    # 230 images: validation and test get their share even though each class is tiny
    assert abs(totals["validation"] - 23) <= 3 and abs(totals["test"] - 23) <= 3


def test_tiny_class_rule_with_small_train_fraction() -> None:
    es = entries({"x": 3, "y": 4, "z": 2})
    got = per_label(es, assign_splits(es, fractions=(0.1, 0.45, 0.45)).splits)
    assert got["x"]["train"] >= 1 and got["y"]["train"] >= 1  # labels with >= 3 images


def test_unlabeled_items_get_a_split() -> None:
    es = entries({"a": 20, "": 20})
    res = assign_splits(es)
    assert set(res.splits) == {e.id for e in es}
    assert Counter(res.splits[e.id] for e in es if not e.labels) == Counter(
        train=16, validation=2, test=2
    )


def test_fixed_split_wins() -> None:
    es = [SplitEntry(i, ("a",), "test") for i in range(10)] + entries({"a": 10}, start=10)
    res = assign_splits(es)
    assert all(res.splits[i] == "test" for i in range(10))
    assert Counter(res.splits[i] for i in range(10, 20)) == Counter(train=8, validation=1, test=1)


def test_groups_never_straddle_splits() -> None:
    es = entries({"a": 60, "b": 60})
    rng = np.random.default_rng(0)
    ids = rng.permutation(120).tolist()
    groups = [ids[k : k + 4] for k in range(0, 40, 4)] + [ids[40:42]]
    for seed in range(5):
        res = assign_splits(es, seed=seed, groups=groups)
        for g in groups:
            assert len({res.splits[i] for i in g}) == 1
        assert abs(Counter(res.splits.values())["train"] - 96) <= 4


def test_group_takes_the_fixed_split_of_a_member() -> None:
    es = [SplitEntry(0, ("a",), "validation"), SplitEntry(1, ("a",)), SplitEntry(2, ("a",))]
    es += entries({"a": 30}, start=3)
    res = assign_splits(es, groups=[[0, 1, 2]])
    assert [res.splits[i] for i in (0, 1, 2)] == ["validation"] * 3
    assert res.conflicts == []


def test_conflicting_fixed_splits_are_noted() -> None:
    es = [
        SplitEntry(0, ("a",), "train"),
        SplitEntry(1, ("a",), "test"),
        SplitEntry(2, ("a",), "test"),
        SplitEntry(3, ("a",)),
    ]
    res = assign_splits(es, groups=[[0, 1, 2, 3]])
    assert [res.splits[i] for i in range(4)] == ["train", "test", "test", "test"]
    assert len(res.conflicts) == 1 and res.conflicts[0]["ids"] == [0, 1, 2, 3]


def test_multi_label_iterative_stratification() -> None:
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d", "rare"]
    es = []
    for i in range(400):
        labs = tuple(sorted({lab for lab in labels[:4] if rng.random() < 0.35}))
        if i % 40 == 0:
            labs = tuple(sorted({*labs, "rare"}))
        es.append(SplitEntry(i, labs))
    res = assign_splits(es, seed=1)
    got = per_label(es, res.splits)
    for lab in labels:
        n = sum(got[lab].values())
        for split, frac in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
            assert abs(got[lab][split] - frac * n) <= max(2, 0.05 * n), (lab, got[lab])


def test_many_items_are_fast() -> None:
    es = entries({f"c{i}": 500 for i in range(100)})
    res = assign_splits(es, groups=[[k, k + 1] for k in range(0, 5000, 2)])
    assert Counter(res.splits.values())["test"] == pytest.approx(5000, abs=60)


def test_bad_input() -> None:
    with pytest.raises(DatasetError, match="duplicate ids"):
        assign_splits([SplitEntry(1), SplitEntry(1)])
    with pytest.raises(DatasetError, match="unknown split"):
        assign_splits([SplitEntry(1, fixed="holdout")])


def test_previous_splits_are_kept_and_new_items_stratified() -> None:
    old = [SplitEntry(i, ("a" if i % 2 else "b",), previous="test") for i in range(40)]
    new = entries({"a": 50, "b": 50}, start=100)
    res = assign_splits(old + new)
    assert all(res.splits[i] == "test" for i in range(40))
    for counts in per_label(new, res.splits).values():
        assert counts == Counter(train=40, validation=5, test=5)
    assert res.reassigned == [] and res.conflicts == []


def test_new_duplicates_of_an_old_item_take_its_split() -> None:
    es = [SplitEntry(0, ("a",), previous="validation"), SplitEntry(1, ("a",))]
    es.append(SplitEntry(2, ("b",)))
    es += entries({"a": 30}, start=3)
    res = assign_splits(es, groups=[[0, 1, 2]])
    assert [res.splits[i] for i in (0, 1, 2)] == ["validation"] * 3
    assert res.conflicts == []


def test_old_items_in_different_splits_keep_them_and_are_noted() -> None:
    es = [
        SplitEntry(0, ("a",), previous="train"),
        SplitEntry(1, ("a",), previous="test"),
        SplitEntry(2, ("a",), previous="test"),
        SplitEntry(3, ("a",)),
    ]
    res = assign_splits(es, groups=[[0, 1, 2, 3]])
    assert [res.splits[i] for i in range(4)] == ["train", "test", "test", "test"]
    assert "previous version" in res.conflicts[0]["message"]


def test_ml_use_wins_over_the_previous_split_and_is_counted() -> None:
    es = [
        SplitEntry(0, ("a",), fixed="test", previous="train"),
        SplitEntry(1, ("a",), fixed="train", previous="train"),
        SplitEntry(2, ("a",), previous="validation"),
        SplitEntry(3, ("a",)),
    ]
    res = assign_splits(es, groups=[[2, 3]])
    assert [res.splits[i] for i in range(4)] == ["test", "train", "validation", "validation"]
    assert res.reassigned == [0]


def test_unknown_previous_split() -> None:
    with pytest.raises(DatasetError, match="previous split"):
        assign_splits([SplitEntry(0, ("a",), previous="holdout")])
