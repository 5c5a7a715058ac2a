"""Stored drift checks: ``monitor`` keeps each result with its plots' data (what the
console's Monitor page draws), newest first, bounded per model version."""

from __future__ import annotations

import pytest

from autovision.monitoring import history
from autovision.monitoring import monitor as monitor_mod


@pytest.fixture
def logged(monkeypatch):
    def use(recs):
        monkeypatch.setattr(monitor_mod, "recent_records", lambda *a, **k: list(recs))

    return use


def test_monitor_stores_its_result_with_plot_data(monitored_ws, records, make_image, logged):
    logged(records([make_image(i % 3, 32, 700 + i) for i in range(40)]))
    out = monitor_mod.monitor(monitored_ws, "toy")
    [check] = history.latest_checks(monitored_ws, "toy")
    assert check["id"] == out["check_id"] and check["verdict"] == out["verdict"]
    assert check["name"] == "toy" and check["version"] == 1 and check["samples"] == 40
    assert {t["name"] for t in check["tests"]} == {t["name"] for t in out["tests"]}
    plots = check["plots"]
    assert plots["labels"]["names"] == ["cat", "dog", "fox"]
    assert sum(plots["labels"]["recent"]) == pytest.approx(1.0)
    conf = plots["histograms"]["confidence"]
    assert len(conf["edges"]) == history.BINS + 1 and len(conf["recent"]) == history.BINS
    assert sum(conf["reference"]) == pytest.approx(1.0)
    assert "input:brightness" in plots["histograms"]
    assert "ids" not in check["outliers"]

    monitor_mod.monitor(monitored_ws, "toy", store=False)
    assert len(history.checks(monitored_ws, "toy")) == 1


def test_old_checks_are_pruned(monitored_ws, monkeypatch):
    monkeypatch.setattr(history, "KEEP_PER_MODEL", 3)
    result = {"model": "toy@1", "model_id": "m-drift", "verdict": "no_drift", "samples": 1}
    ids = [history.save_check(monitored_ws, result)["id"] for _ in range(5)]
    assert [c["id"] for c in history.checks(monitored_ws)] == ids[::-1][:3]
    assert history.checks(monitored_ws, "other") == []
