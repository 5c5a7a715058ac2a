"""Drift statistics on synthetic arrays, and the reference's round trip."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.monitoring.drift import MIN_SAMPLES, Sample, detect, mmd_permutation_test

LABELS = ["a", "b", "c"]


def _sample(rng, n, *, shift=0.0, label_probs=(1 / 3, 1 / 3, 1 / 3), brightness=0.5):
    labels = rng.choice(3, n, p=label_probs)
    logits = rng.normal(0, 1, (n, 3)) + 2.5 * np.eye(3)[labels]
    logits[:, 0] -= shift  # a mild change in the outputs
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    emb = rng.normal(0, 1, (n, 8)) + np.eye(3, 8)[labels] * 2 + shift
    stats = {
        "brightness": rng.normal(brightness, 0.05, n),
        "contrast": rng.normal(0.2, 0.03, n),
    }
    return Sample(probs, emb, stats)


def test_no_drift_in_distribution():
    rng = np.random.default_rng(10)
    ref = _sample(rng, 400)
    res = detect(ref, _sample(rng, 200), labels=LABELS)
    assert res.verdict == "no_drift" and res.drift is False
    assert {t["family"] for t in res.tests} == {
        "label",
        "softmax",
        "confidence",
        "embedding",
        "input",
    }
    assert all(t["p_value"] is not None and t["threshold"] > 0 for t in res.tests)


def test_thresholds_are_weighted_bonferroni_summing_to_alpha():
    rng = np.random.default_rng(1)
    res = detect(_sample(rng, 300), _sample(rng, 100), labels=LABELS, alpha=0.05)
    assert sum(t["threshold"] for t in res.tests) == pytest.approx(0.05)
    softmax = [t for t in res.tests if t["family"] == "softmax"]
    assert softmax[0]["threshold"] == pytest.approx(0.05 / 5 / 3)


def test_false_alarm_rate_stays_under_alpha():
    rng = np.random.default_rng(2)
    ref = _sample(rng, 400)
    alarms = sum(detect(ref, _sample(rng, 100), seed=i).verdict == "drift" for i in range(40))
    assert alarms <= 4  # 5% of 40 is 2; a little room for chance


def test_input_shift_detected():
    rng = np.random.default_rng(3)
    ref = _sample(rng, 400)
    res = detect(ref, _sample(rng, 100, brightness=0.35), labels=LABELS)
    assert res.verdict == "drift" and res.drift is True
    failing = {t["name"] for t in res.tests if t["verdict"] == "drift"}
    assert "input:brightness" in failing


def test_embedding_shift_detected_by_mmd():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (200, 16))
    y = rng.normal(0, 1, (100, 16)) + 0.6
    stat, p, _ = mmd_permutation_test(x, y)
    assert p <= 1 / 201 + 1e-12 and stat > 0
    _, p_same, _ = mmd_permutation_test(x, rng.normal(0, 1, (100, 16)))
    assert p_same > 0.05


def test_label_shift_detected():
    rng = np.random.default_rng(5)
    ref = _sample(rng, 400)
    res = detect(ref, _sample(rng, 60, label_probs=(1.0, 0.0, 0.0)), labels=LABELS)
    assert res.verdict == "drift"
    label = next(t for t in res.tests if t["name"] == "label")
    assert label["verdict"] == "drift" and label["recent_share"]["a"] > 0.9


def test_not_enough_data_on_five_samples():
    rng = np.random.default_rng(6)
    res = detect(_sample(rng, 400), _sample(rng, 5, brightness=0.1), labels=LABELS)
    assert res.verdict == "not_enough_data" and res.drift is None
    out = res.to_dict()
    assert out["drift"] is None and out["samples"] == 5 and out["min_samples"] == MIN_SAMPLES
    assert out["tests"] and all(t["verdict"] == "not_enough_data" for t in out["tests"])
    assert f"at least {MIN_SAMPLES}" in out["notes"][0]


def test_without_embeddings_the_mmd_test_is_skipped_and_said():
    rng = np.random.default_rng(7)
    ref, recent = _sample(rng, 200), _sample(rng, 60)
    recent.embeddings = None
    res = detect(ref, recent, labels=LABELS)
    assert "embedding" not in {t["family"] for t in res.tests}
    assert any("MMD" in n for n in res.notes)


def test_from_records():
    recs = [
        {"probs": [0.7, 0.2, 0.1], "embedding": [0.1, 0.2], "stats": {"brightness": 0.4}},
        {"probs": [0.1, 0.8, 0.1], "embedding": [0.3, 0.1], "stats": {}},
    ]
    s = Sample.from_records(recs)
    assert s.probs.shape == (2, 3) and s.embeddings.shape == (2, 2)
    assert np.isnan(s.stats["brightness"][1])


def test_reference_round_trip(tmp_path):
    from autovision.monitoring.reference import Reference

    rng = np.random.default_rng(8)
    ref = Reference("m-1", LABELS, "toy@1", "test", _sample(rng, 50), "2026-01-01T00:00:00")
    ref.save(tmp_path)
    back = Reference.load(tmp_path)
    assert back.labels == LABELS and back.model_id == "m-1" and len(back) == 50
    np.testing.assert_allclose(back.sample.probs, ref.sample.probs, rtol=1e-6)
    np.testing.assert_allclose(
        back.sample.stats["brightness"], ref.sample.stats["brightness"], rtol=1e-6
    )


def test_reference_is_encrypted_with_a_configured_key(tmp_path, monkeypatch):
    from autovision.monitoring.reference import REFERENCE_FILE, Reference
    from autovision.security import crypto

    monkeypatch.setenv(crypto.ENV_KEY, crypto.new_key())
    rng = np.random.default_rng(9)
    Reference("m-1", LABELS, "toy@1", "test", _sample(rng, 40), "").save(tmp_path)
    assert crypto.is_encrypted((tmp_path / REFERENCE_FILE).read_bytes())
    assert len(Reference.load(tmp_path)) == 40
