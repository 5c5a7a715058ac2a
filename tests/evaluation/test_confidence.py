"""Confidence thresholds and calibration bins."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from autovision.evaluation.confidence import THRESHOLDS, calibration, threshold_table


def test_threshold_grid_is_the_cloud_automl_one():
    assert THRESHOLDS == (
        0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
        0.75, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99,
    )  # fmt: skip


def test_calibration_bins_agree_with_sklearn():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 500)
    outcome = (rng.uniform(0, 1, 500) < conf).astype(int)
    cal = calibration(conf, outcome)
    acc, mean_conf = calibration_curve(outcome, conf, n_bins=10)
    filled = [b for b in cal["bins"] if b["count"]]
    assert [b["accuracy"] for b in filled] == pytest.approx(acc)
    assert [b["confidence"] for b in filled] == pytest.approx(mean_conf)


def test_single_label_abstains_below_the_threshold():
    Y = np.array([[1, 0], [0, 1], [0, 1]])
    P = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    rows = threshold_table(Y, P, "single-label", thresholds=[0.0, 0.7, 0.95])
    assert rows[0] == {"threshold": 0.0, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3,
                       "false_positive_rate": 1 / 3, "coverage": 1.0}  # fmt: skip
    assert rows[1] == {"threshold": 0.7, "precision": 1.0, "recall": 2 / 3, "f1": 0.8,
                       "false_positive_rate": 0.0, "coverage": 2 / 3}  # fmt: skip
    assert rows[2]["precision"] is None and rows[2]["coverage"] == 0.0
