"""Greedy ensemble selection (Caruana et al. 2004) on constructed validation probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.search.ensemble import beats_by_margin, measure, mix, select


def _probs(true_p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-label probabilities giving ``true_p`` to each image's label."""
    out = np.empty((len(y), 2), dtype=np.float32)
    out[np.arange(len(y)), y] = true_p
    out[np.arange(len(y)), 1 - y] = 1 - true_p
    return out


Y = np.array([0, 1] * 10)


def test_a_mix_of_complementary_models_is_picked() -> None:
    # A is wrong (0.4) on the last 6 images, B on the first 6: each 70 %, their mean 100 %
    a = _probs(np.r_[np.full(14, 0.9), np.full(6, 0.4)], Y)
    b = _probs(np.r_[np.full(6, 0.4), np.full(14, 0.9)], Y)
    worse = _probs(np.full(20, 0.45), Y)
    sel = select("single-label", Y, [worse, a, b])
    assert sel.kept and sorted(sel.members) == [1, 2]
    assert sel.score == pytest.approx(1.0) and sel.single_score == pytest.approx(0.7)
    assert sum(sel.counts) >= 2 and sum(sel.weights) == pytest.approx(1.0)
    assert all(isinstance(c, int) for c in sel.counts)
    mixed = mix([worse, a, b], sel.members, sel.weights)
    assert measure("single-label", Y, mixed)[0] == pytest.approx(1.0)
    assert sel.to_dict()["kept"] is True


def test_no_help_falls_back_to_the_single_model() -> None:
    a = _probs(np.r_[np.full(14, 0.9), np.full(6, 0.4)], Y)
    b = _probs(np.r_[np.full(14, 0.8), np.full(6, 0.3)], Y)  # A, worse on every image
    sel = select("single-label", Y, [b, a])
    assert not sel.kept and sel.members == [1] and sel.weights == [1.0]
    assert sel.score == sel.single_score == pytest.approx(0.7)


def test_a_mix_better_by_less_than_the_margin_is_not_kept() -> None:
    rng = np.random.default_rng(0)
    base = np.r_[np.full(14, 0.9), np.full(6, 0.4)]
    a = _probs(np.clip(base + rng.normal(0, 0.02, 20), 0.01, 0.99), Y)
    b = _probs(np.clip(base + rng.normal(0, 0.02, 20), 0.01, 0.99), Y)
    sel = select("single-label", Y, [a, b])
    assert not sel.kept and len(sel.members) == 1  # same accuracy, log loss within 0.01
    assert "margin" in sel.why or "no mix" in sel.why


def test_multi_label_selection_runs() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 5, dtype=np.float32)
    p = np.clip(y * 0.8 + 0.1, 0, 1).astype(np.float32)
    sel = select("multi-label", y, [p, p[::-1].copy()])
    assert sel.members == [0] and sel.score == pytest.approx(1.0)


def test_margin_rule() -> None:
    assert beats_by_margin((0.905, 0.5), (0.9, 0.5))
    assert beats_by_margin((0.902, 0.1), (0.9, 0.5))  # better by less: the loss decides
    assert beats_by_margin((0.9, 0.48), (0.9, 0.5))
    assert not beats_by_margin((0.9, 0.495), (0.9, 0.5))
    assert not beats_by_margin((0.89, 0.1), (0.9, 0.5))
