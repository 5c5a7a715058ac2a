from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from autovision.errors import TrainingError
from autovision.search.prepare import prepare_data, stratified_order


def test_targets_and_profile(make_dataset) -> None:
    dv = make_dataset(labels=("a", "b", "c"), counts=(6, 2, 2), size=16)
    data = prepare_data(dv)
    assert data.task == "single-label" and data.labels == ["a", "b", "c"]
    assert len(data.train) == 18 and len(data.val) == 6
    assert sorted(Counter(data.y_train.tolist()).values()) == [6, 6, 6]
    assert data.profile.small and data.profile.imbalance == 1.0
    assert all(it.split != "test" for it in data.items)


def test_stratified_prefix_is_balanced(make_dataset) -> None:
    dv = make_dataset(labels=("a", "b"), counts=(10, 1, 0))
    data = prepare_data(dv)
    first = data.y_train[data.order[:6]]
    assert sorted(Counter(first.tolist()).values()) == [3, 3]
    assert sorted(data.order.tolist()) == list(range(20))


def test_one_label_is_refused(make_dataset) -> None:
    dv = make_dataset(labels=("only",), counts=(5, 1, 1))
    with pytest.raises(TrainingError, match="at least 2 labels"):
        prepare_data(dv)


def test_label_without_training_images(make_dataset, workspace) -> None:
    dv = make_dataset(labels=("a", "b", "c"), counts=(4, 1, 1))
    items = [it for it in dv.items if not (it.label == "c" and it.split == "train")]
    dv2 = workspace.create_version("tiny", items, multi_label=False)
    with pytest.raises(TrainingError, match="'c' have no training images"):
        prepare_data(dv2)


def test_empty_validation_falls_back_to_a_holdout(make_dataset) -> None:
    dv = make_dataset(labels=("a", "b"), counts=(10, 0, 2))
    data = prepare_data(dv)
    assert data.validation_source == "train-holdout"
    assert len(data.val) == 2 and len(data.train) == 18
    assert {it.label for it in data.val} == {"a", "b"}


def test_empty_validation_and_tiny_train(make_dataset) -> None:
    dv = make_dataset(labels=("a", "b"), counts=(1, 0, 1))
    with pytest.raises(TrainingError, match="validation split is empty"):
        prepare_data(dv)


def test_task_single_label_refuses_multi_label_items(make_dataset) -> None:
    dv = make_dataset(labels=("a", "b"), counts=(3, 1, 0), multi_label=True)
    assert prepare_data(dv).task == "multi-label"
    assert prepare_data(dv).y_train.shape == (6, 2)
    with pytest.raises(TrainingError, match="several labels"):
        prepare_data(dv, task="single-label")
    with pytest.raises(TrainingError, match="unknown task"):
        prepare_data(dv, task="regression")


def test_stratified_order_is_deterministic(make_dataset) -> None:
    items = list(make_dataset(counts=(5, 0, 0)).items)
    a = stratified_order(items, np.random.default_rng(1))
    b = stratified_order(items, np.random.default_rng(1))
    assert a.tolist() == b.tolist()


def test_fit_rows_of_a_trial_and_of_a_refit(make_dataset) -> None:
    data = prepare_data(make_dataset(labels=("a", "b"), counts=(8, 4, 0)))
    n_val, n = len(data.val), 6
    rows, y = data.fit_rows(n)  # rows of ``items``: validation first, then training
    assert rows.tolist() == sorted(n_val + data.order[:n])
    assert np.array_equal(y, data.y_train[rows - n_val])
    cached, yc = data.fit_rows(n, cached=True)  # cache rows: training images in ``order``
    assert cached.tolist() == list(range(n_val, n_val + n))
    assert np.array_equal(yc, data.y_train[data.order[:n]])
    refit, yr = data.fit_rows(n, refit=True)  # every validation image trains too
    assert refit.tolist() == [*range(n_val), *rows]
    assert np.array_equal(yr, np.concatenate([data.y_val, y]))
