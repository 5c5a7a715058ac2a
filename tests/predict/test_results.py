"""Output lines, label selection, resume bookkeeping and in-place preprocessing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autovision.models.preprocess import Preprocessing, normalize
from autovision.predict.loading import normalize_into
from autovision.predict.results import (
    completed_sources,
    format_prediction,
    label_thresholds,
    prediction_line,
)


def test_format_prediction_sorts_and_filters() -> None:
    probs = np.array([0.1, 0.6, 0.3], dtype=np.float32)
    labels = ["a", "b", "c"]
    single = label_thresholds("single-label", 3)
    assert format_prediction(probs, labels, single) == {
        "ids": ["1", "2", "0"],
        "displayNames": ["b", "c", "a"],
        "confidences": [0.6, 0.3, 0.1],
    }
    assert format_prediction(probs, labels, single, max_predictions=1)["ids"] == ["1"]
    above = label_thresholds("single-label", 3, confidence_threshold=0.25)
    assert format_prediction(probs, labels, above)["ids"] == ["1", "2"]
    multi = label_thresholds("multi-label", 3, model_thresholds=[0.05, 0.7, 0.2])
    assert format_prediction(probs, labels, multi)["displayNames"] == ["c", "a"]
    assert format_prediction(probs, labels, label_thresholds("multi-label", 3))["ids"] == ["1"]


def test_completed_sources_cuts_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    pred = {"ids": [], "displayNames": [], "confidences": []}
    text = prediction_line("a.png", pred) + "garbage\n" + prediction_line("b.png", pred)
    path.write_text(text + '{"instance": {"content": "c.p')
    assert completed_sources(path) == {"a.png", "b.png"}
    assert path.read_text() == text
    assert json.loads(path.read_text().splitlines()[-1])["instance"]["content"] == "b.png"
    assert completed_sources(tmp_path / "absent.jsonl") == set()


def test_normalize_into_matches_preprocess_exactly() -> None:
    spec = Preprocessing(input_size=8, mean=(127.0, 120.5, 100.0), std=(128.0, 60.0, 70.5))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = np.empty((3, 8, 8), dtype=np.float32)
    normalize_into(pixels, spec, out)
    np.testing.assert_array_equal(out, normalize(pixels[None], spec)[0])
