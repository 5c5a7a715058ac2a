"""A training job's progress from its events: what the Train page and ``jobs show`` show.

Events are the search's own progress events (see :func:`autovision.search.run.train`) plus
the job's status changes (``{"event": "job", "status": ...}``). A resumed job has several
``search_start`` events; trial numbers go on across sessions, and a trial's last
``trial_end`` is the one that counts.
"""

from __future__ import annotations

from typing import Any


def _trial_row(end: dict[str, Any], start: dict[str, Any] | None) -> dict[str, Any]:
    cfg = end.get("config") or (start or {}).get("config") or {}
    row = {
        "trial": end.get("trial"),
        "phase": end.get("phase") or (start or {}).get("phase") or "explore",
        "state": end.get("state"),
        "backbone": cfg.get("backbone"),
        "mode": cfg.get("mode"),
        "size": cfg.get("image_size"),
        "score": end.get("score"),
        "seconds": end.get("seconds"),
        "n_train": (start or {}).get("n_train"),
    }
    for key in ("why", "error", "stopped"):
        if end.get(key):
            row[key] = end[key]
    return row


def summarize(job: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """``trials`` (one row per finished trial: backbone, mode, size, score, seconds),
    ``current`` (the trial running now, with its epoch), ``best``, ``budget`` (total, used,
    left), ``stop_reason``, ``model`` (``NAME@VERSION``), ``run_id`` and ``last_seq``."""
    starts: dict[str, dict[str, Any]] = {}
    trials: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    budget: dict[str, Any] = {}
    last_time: dict[str, Any] = {}
    run_id = None
    stop_reason = None
    sessions = 0
    for e in events:
        kind = e.get("event")
        if "elapsed" in e:
            last_time = e
        if kind == "search_start":
            sessions += 1
            run_id = e.get("run_id") or run_id
            budget = dict(e.get("budget") or {})
            current = None
        elif kind == "trial_start":
            starts[str(e.get("trial"))] = e
            current = {
                "trial": e.get("trial"),
                "phase": e.get("phase"),
                "config": e.get("config"),
                "n_train": e.get("n_train"),
                "epochs": e.get("epochs"),
                "epoch": 0,
            }
        elif kind == "epoch" and current is not None and current["trial"] == e.get("trial"):
            current["epoch"], current["score"] = e.get("epoch"), e.get("score")
        elif kind == "trial_end":
            key = str(e.get("trial"))
            if e.get("state") == "SKIPPED" and not e.get("config"):
                continue  # an enqueued default the search ended before: never a trial
            trials[key] = _trial_row(e, starts.get(key))
            if current is not None and str(current["trial"]) == key:
                current = None
        elif kind == "done":
            stop_reason = (e.get("result") or {}).get("stop_reason")
            current = None
    rows = list(trials.values())
    result = job.get("result") or {}
    stop_reason = stop_reason or result.get("stop_reason")
    if job.get("status") != "running":
        current = None
    return {
        "trials": rows,
        "current": current,
        "best": _best(rows),
        "budget": _budget(budget, last_time, rows),
        "stop_reason": stop_reason,
        "model": f"{result['name']}@{result['version']}" if result.get("name") else None,
        "run_id": run_id,
        "sessions": sessions,
        "last_seq": events[-1]["seq"] if events else 0,
    }


def _trained(row: dict[str, Any]) -> bool:
    """Counts against a trial budget: trained to the end or pruned after training (not a
    skipped configuration, a deadline or the refit)."""
    if row["phase"] == "refit":
        return False
    return row["state"] == "COMPLETE" or (row["state"] == "PRUNED" and row["seconds"] is not None)


def _best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if r["state"] == "COMPLETE" and r["score"] is not None]
    return max(scored, key=lambda r: r["score"]) if scored else None


def _budget(
    budget: dict[str, Any], last: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    seconds, trials = budget.get("seconds"), budget.get("trials")
    used_s = last.get("elapsed")
    trained = sum(1 for r in rows if _trained(r))
    left_s = None
    if seconds is not None and used_s is not None:
        left_s = max(0.0, float(seconds) - float(used_s))
    return {
        "seconds": seconds,
        "trials": trials,
        "used_seconds": used_s,
        "used_trials": trained,
        "left_seconds": left_s,
        "left_trials": max(0, trials - trained) if trials is not None else None,
    }
