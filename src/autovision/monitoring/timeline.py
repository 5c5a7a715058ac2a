"""Prediction volume and confidence over time: the prediction log bucketed per hour or day.

The buckets are grouped by the database (one ``GROUP BY`` over the ``(name, time)`` index)
so a month of logged predictions costs one query, not a row per prediction in Python;
empty buckets are filled with zeros so a chart of the window has no gaps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from autovision.monitoring.log import LogError, parse_age

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
AUTO_HOURLY_UP_TO = timedelta(days=3)
"""``bucket="auto"``: hourly buckets for windows up to three days, daily beyond."""
MAX_BUCKETS = 2000


def _floor(t: datetime, bucket: str) -> datetime:
    t = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    t = t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0) if bucket == "day" else t


def _key(t: datetime, bucket: str) -> str:
    return t.strftime("%Y-%m-%d" if bucket == "day" else "%Y-%m-%d %H")


def _grouped(ws: Any, conds: list[Any], bucket: str) -> dict[str, tuple[int, float]]:
    """``{bucket key: (count, sum of confidence)}`` of the rows matching ``conds``."""
    from sqlalchemy import func, select

    from autovision.workspace.db import PredictionLogRow as R

    dialect = ws.engine.dialect.name
    if dialect == "sqlite":  # stored as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC)
        key = func.substr(R.time, 1, 10 if bucket == "day" else 13)
    elif dialect == "postgresql":
        fmt = "YYYY-MM-DD" if bucket == "day" else "YYYY-MM-DD HH24"
        key = func.to_char(func.date_trunc(bucket, func.timezone("UTC", R.time)), fmt)
    else:
        key = None
    out: dict[str, tuple[int, float]] = {}
    with ws.Session() as s:
        if key is not None:
            q = select(key, func.count(), func.sum(R.confidence)).where(*conds).group_by(key)
            for k, n, total in s.execute(q):
                out[str(k)] = (int(n), float(total or 0.0))
            return out
        for t, conf in s.execute(select(R.time, R.confidence).where(*conds)):
            k = _key(_floor(t, bucket), bucket)
            n, total = out.get(k, (0, 0.0))
            out[k] = (n + 1, total + float(conf))
    return out


def timeline(
    ws: Any,
    name: str | None = None,
    *,
    since: str | float | timedelta = "7d",
    bucket: str = "auto",
    model_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Predictions per ``bucket`` (``hour``, ``day`` or ``auto``) over the last ``since``, of
    model ``name`` (every version) or one ``model_id`` (None, None: every model).

    ``{"name", "since_s", "bucket", "total", "mean_confidence", "points": [{"start" (ISO,
    UTC), "count", "mean_confidence" (None when empty)}]}``, oldest bucket first.
    """
    from autovision.workspace.db import PredictionLogRow as R

    window = parse_age(since)
    if window <= timedelta(0):
        raise LogError(f"invalid window {since!r}: expected a positive duration")
    if bucket == "auto":
        bucket = "hour" if window <= AUTO_HOURLY_UP_TO else "day"
    if bucket not in BUCKETS:
        raise LogError(f"unknown bucket {bucket!r}: expected hour, day or auto")
    end = (now or datetime.now(UTC)).astimezone(UTC)
    first = _floor(end - window, bucket)
    if (end - first) / BUCKETS[bucket] > MAX_BUCKETS:
        raise LogError(f"{since!r} in {bucket}s is over {MAX_BUCKETS} buckets: use bucket='day'")
    conds = [R.time >= first, R.time <= end]
    if name is not None:
        conds.append(R.name == name)
    if model_id is not None:
        conds.append(R.model_id == model_id)
    groups = _grouped(ws, conds, bucket)
    points = []
    count, conf = 0, 0.0
    t = first
    while t <= end:
        n, total = groups.get(_key(t, bucket), (0, 0.0))
        count, conf = count + n, conf + total
        points.append(
            {
                "start": t.isoformat(),
                "count": n,
                "mean_confidence": round(total / n, 6) if n else None,
            }
        )
        t += BUCKETS[bucket]
    return {
        "name": name,
        "model_id": model_id,
        "since_s": window.total_seconds(),
        "bucket": bucket,
        "total": count,
        "mean_confidence": round(conf / count, 6) if count else None,
        "points": points,
    }
