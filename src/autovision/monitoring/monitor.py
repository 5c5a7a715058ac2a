"""``monitor``: a model version's recent logged predictions against its drift reference, with
daily windows for the report; and :class:`DriftWatcher`, the server's periodic recomputation
behind the ``autovision_drift`` gauges."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autovision.errors import AutovisionError
from autovision.monitoring.drift import DriftResult, Sample, detect, find_outliers
from autovision.monitoring.reference import Reference, ensure_reference

log = logging.getLogger("autovision.monitoring")

DEFAULT_SINCE = "24h"


def recent_records(
    ws: Any, model_id: str, *, since: str | None = None, last: int | None = None
) -> list[dict[str, Any]]:
    """The prediction log's records of one model version: the newest ``last``, or those of
    the last ``since`` (default 24h when neither is given)."""
    from autovision.monitoring.log import query

    if since is None and last is None:
        since = DEFAULT_SINCE
    return query(ws, model_id=model_id, since=since, limit=last)


def check(
    reference: Reference, records: Sequence[dict[str, Any]], *, alpha: float = 0.05
) -> DriftResult:
    """Drift of logged ``records`` against ``reference`` (records of another label count are
    left out and said in the notes)."""
    width = len(reference.labels)
    usable = [r for r in records if r.get("probs") is not None and len(r["probs"]) == width]
    result = detect(reference, Sample.from_records(usable), alpha=alpha)
    if len(usable) < len(records):
        result.notes.append(f"{len(records) - len(usable)} record(s) without {width} probabilities")
    return result


def daily(
    reference: Reference, records: Sequence[dict[str, Any]], *, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """The verdict per UTC day of ``records`` (oldest first)."""
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_day.setdefault(str(r.get("time") or "")[:10], []).append(r)
    out = []
    for day in sorted(by_day):
        res = check(reference, by_day[day], alpha=alpha)
        failing = [t["name"] for t in res.tests if t["verdict"] == "drift"]
        out.append({"day": day, "samples": res.samples, "verdict": res.verdict, "failing": failing})
    return out


def monitor(
    ws: Any,
    ref: str,
    *,
    since: str | None = None,
    last: int | None = None,
    alpha: float = 0.05,
    report: str | Path | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """Drift of ``ref`` (``NAME``, ``NAME@ALIAS``, ``NAME@3``, an id): the JSON of
    ``autovision monitor``; the reference is computed and stored on first use, and the
    result (with its plots' data) is kept for the console (``store``; see
    :mod:`autovision.monitoring.history`)."""
    from autovision.versions.store import resolve

    if since is not None and last is not None:
        raise AutovisionError("give --since or --last, not both")
    mv = resolve(ws, ref)
    reference = ensure_reference(ws, mv.id)
    records = recent_records(ws, mv.id, since=since, last=last)
    result = check(reference, records, alpha=alpha)
    out = {
        "model": mv.ref,
        "model_id": mv.id,
        **result.to_dict(),
        "window": {"since": since or (None if last else DEFAULT_SINCE), "last": last},
        "reference": {
            "dataset": reference.dataset,
            "split": reference.split,
            "samples": len(reference),
            "created_at": reference.created_at,
        },
        "daily": daily(reference, records, alpha=alpha),
        "outliers": flag_outliers(ws, reference, records),
    }
    recent = Sample.from_records(_usable(reference, records))
    if report is not None:
        from autovision.monitoring.report import write_report
        from autovision.workspace.storage import is_remote, local_then_upload

        with local_then_upload(report) as path:  # a local file or an s3:// object
            write_report(path, out, reference, recent)
        out["report"] = os.fspath(report) if is_remote(os.fspath(report)) else str(path)
    if store:
        from autovision.monitoring.history import plot_data, save_check

        out["check_id"] = save_check(ws, out, plot_data(reference, recent))["id"]
    return out


def flag_outliers(
    ws: Any, reference: Reference, records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Records far from the reference in embedding space enter the review queue (those not
    reviewed yet); ``{"threshold", "checked", "flagged", "queued", "ids" (worst 20)}``."""
    from autovision.monitoring.review import mark_outliers

    found = find_outliers(reference.sample, records)
    queued = mark_outliers(ws, found["ids"]) if found["ids"] else 0
    return {
        "threshold": found["threshold"],
        "checked": found["checked"],
        "flagged": len(found["ids"]),
        "queued": queued,
        "ids": found["ids"][:20],
    }


def _usable(reference: Reference, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    width = len(reference.labels)
    return [r for r in records if r.get("probs") is not None and len(r["probs"]) == width]


class DriftWatcher:
    """Recomputes the drift of every served model every ``every_s`` seconds in a daemon
    thread; :meth:`gauges` gives the latest verdicts (1 drift, 0 none) and p-values."""

    def __init__(
        self,
        ws: Any,
        served: Callable[[], dict[str, str]],
        every_s: float,
        *,
        since: str = DEFAULT_SINCE,
        alpha: float = 0.05,
    ) -> None:
        self.ws = ws
        self.served = served  # {served name: model id}
        self.every_s = every_s
        self.since = since
        self.alpha = alpha
        self.latest: dict[str, DriftResult] = {}
        self._references: dict[str, Reference] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.run_once()

    def run_once(self) -> None:
        """One pass over the served models; a failure is logged, never raised."""
        for key, model_id in list(self.served().items()):
            try:
                if model_id not in self._references:
                    self._references[model_id] = ensure_reference(self.ws, model_id)
                records = recent_records(self.ws, model_id, since=self.since)
                self.latest[key] = check(self._references[model_id], records, alpha=self.alpha)
                flag_outliers(self.ws, self._references[model_id], records)
            except Exception as exc:  # noqa: BLE001 - monitoring must never stop the server
                log.warning("drift of %s not computed: %s", key, exc)

    def verdicts(self) -> list[tuple[dict[str, str], float]]:
        out = []
        for key, res in list(self.latest.items()):
            if res.drift is not None:
                out.append(({"model": key, "test": "overall"}, float(res.drift)))
            for t in res.tests:
                if t["p_value"] is not None:
                    out.append(({"model": key, "test": t["name"]}, float(t["verdict"] == "drift")))
        return out

    def p_values(self) -> list[tuple[dict[str, str], float]]:
        return [
            ({"model": key, "test": t["name"]}, float(t["p_value"]))
            for key, res in list(self.latest.items())
            for t in res.tests
            if t["p_value"] is not None
        ]

    def register(self, metrics: Any) -> None:
        metrics.add_gauge(
            "autovision_drift",
            "Latest drift verdict per model and test (1 drift, 0 none; absent: not enough data).",
            ("model", "test"),
            self.verdicts,
        )
        metrics.add_gauge(
            "autovision_drift_p_value",
            "p-value of the latest drift test per model and test.",
            ("model", "test"),
            self.p_values,
        )


def start_drift_watcher(state: Any) -> DriftWatcher | None:
    """The server's watcher (``--monitor-every``; None when 0): gauges registered now, the
    first recomputation one period after start, so start-up loads no reference."""
    every = state.settings.monitor_every_s
    if not every:
        return None
    watcher = DriftWatcher(
        state.ws, lambda: {key: m.id for key, m in list(state.models.items())}, every
    )
    watcher.register(state.metrics)
    watcher.start()
    return watcher
