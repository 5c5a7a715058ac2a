"""Prediction volume and confidence per hour or day (``monitoring.timeline``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autovision.monitoring.log import LogError
from autovision.monitoring.timeline import timeline

pytestmark = pytest.mark.usefixtures("db_url")  # SQLite and PostgreSQL

NOW = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)


def _log(ws, when, confidence, name="pets", model_id="m-1"):
    from autovision.workspace.db import PredictionLogRow

    with ws.Session.begin() as s:
        n = s.query(PredictionLogRow).count()
        s.add(
            PredictionLogRow(
                id=f"p-{n:04d}",
                time=when,
                name=name,
                model_id=model_id,
                probs=[confidence, 1 - confidence],
                labels=["a"],
                top_label="a",
                confidence=confidence,
                margin=2 * confidence - 1,
            )
        )


def test_hourly_buckets_count_and_average_with_empty_hours_filled(workspace):
    _log(workspace, NOW - timedelta(hours=2, minutes=5), 0.9)
    _log(workspace, NOW - timedelta(hours=2, minutes=25), 0.5)
    _log(workspace, NOW - timedelta(minutes=5), 0.8)
    _log(workspace, NOW - timedelta(minutes=5), 0.1, name="other")
    _log(workspace, NOW - timedelta(days=3), 0.7)  # outside the window
    out = timeline(workspace, "pets", since="6h", now=NOW)
    assert out["bucket"] == "hour" and out["total"] == 3
    starts = [p["start"][:13] for p in out["points"]]
    assert starts[0] == "2025-03-10T06" and starts[-1] == "2025-03-10T12"
    by_hour = {p["start"][11:13]: p for p in out["points"]}
    assert by_hour["10"]["count"] == 2 and by_hour["10"]["mean_confidence"] == pytest.approx(0.7)
    assert by_hour["12"]["count"] == 1 and by_hour["11"] == {
        "start": "2025-03-10T11:00:00+00:00",
        "count": 0,
        "mean_confidence": None,
    }
    assert out["mean_confidence"] == pytest.approx((0.9 + 0.5 + 0.8) / 3)
    assert timeline(workspace, None, since="6h", now=NOW)["total"] == 4


def test_daily_buckets_for_long_windows_and_model_id_scope(workspace):
    _log(workspace, NOW - timedelta(days=3), 0.7, model_id="m-1")
    _log(workspace, NOW - timedelta(days=3, hours=1), 0.3, model_id="m-2")
    _log(workspace, NOW, 0.6, model_id="m-2")
    out = timeline(workspace, "pets", since="7d", now=NOW)
    assert out["bucket"] == "day" and len(out["points"]) == 8
    assert [p["count"] for p in out["points"]] == [0, 0, 0, 0, 2, 0, 0, 1]
    assert timeline(workspace, model_id="m-2", since="7d", now=NOW)["total"] == 2


def test_bad_arguments_say_why(workspace):
    with pytest.raises(LogError, match="bucket"):
        timeline(workspace, "pets", bucket="minute")
    with pytest.raises(LogError, match="duration"):
        timeline(workspace, "pets", since="soon")
    with pytest.raises(LogError, match="buckets"):
        timeline(workspace, "pets", since="365d", bucket="hour")
