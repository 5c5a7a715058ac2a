from __future__ import annotations

import numpy as np

from autovision.search.metrics import best_thresholds, evaluate


def test_single_label() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    score, m = evaluate("single-label", y, p)
    assert score == m["accuracy"] == 0.75
    assert m["images"] == 4 and 0 < m["log_loss"] < 1


def test_thresholds_maximise_f1() -> None:
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.float32)
    p = np.array([[0.35, 0.1], [0.3, 0.2], [0.1, 0.9], [0.2, 0.4]], dtype=np.float32)
    th = best_thresholds(y, p)
    assert 0.2 < th[0] <= 0.3 and 0.4 < th[1] <= 0.9
    score, m = evaluate("multi-label", y, p)
    assert score == m["f1_micro"] == 1.0
    assert m["f1_macro"] == 1.0 and m["exact_match"] == 1.0
