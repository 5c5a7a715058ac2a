"""``watch``: run a pipeline when its source changes (the self-hosted "Cloud Functions +
Pub/Sub + Cloud Build" trigger).

The source (the import stage's folder, its CSV's folder, or an fsspec prefix) is polled by
listing and content hash. The first poll compares with what the pipeline's last import
read (never run: it runs); later polls with the previous one. Runs happen in this loop, so
at most one at a time, and the runner's lock keeps out runs of other processes. Every
decision is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autovision.errors import AutovisionError, PipelineError
from autovision.pipelines import store
from autovision.pipelines.runner import PipelineBusy, run_pipeline
from autovision.pipelines.schema import load_pipeline
from autovision.pipelines.sources import SourceLister, changes, digest, watched_root

Log = Callable[[str], None]


@dataclass
class WatchResult:
    polls: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"polls": self.polls, "runs": self.runs}


def _describe(diff: dict[str, list[str]]) -> str:
    parts = []
    for kind in ("added", "changed", "removed"):
        names = diff[kind]
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"{len(names)} {kind} ({shown})")
    return "; ".join(parts)


def watch(
    ws: Any,
    path: str,
    *,
    every: float = 600.0,
    max_runs: int | None = None,
    max_polls: int | None = None,
    stop: threading.Event | None = None,
    log: Log | None = None,
    run_log: Log | None = None,
) -> WatchResult:
    """Poll every ``every`` seconds; run the pipeline file at ``path`` when its source
    changed. Stops after ``max_runs`` runs or ``max_polls`` polls, or when ``stop`` is set."""
    say = log or (lambda _m: None)
    loaded = load_pipeline(path)
    imp = loaded.spec.stages.get("import")
    if imp is None:
        raise PipelineError(f"{path}: watch needs an import stage (its source is what changes)")
    source = loaded.resolve(imp.source)
    root = watched_root(source)
    lister = SourceLister()
    last = store.latest_stage(ws, loaded.spec.name, "import")
    before_hash = (last or {}).get("inputs", {}).get("content_hash")
    before: dict[str, str] | None = None
    stop = stop or threading.Event()
    result = WatchResult()
    say(f"watching {root} for pipeline {loaded.spec.name} (every {every:g}s)")
    while not stop.is_set():
        result.polls += 1
        try:
            now = lister.listing(root)
        except PipelineError as exc:
            say(f"poll {result.polls}: cannot list the source: {exc}")
            now = None
        run = False
        if now is not None:
            if before is None:
                if before_hash is None:
                    say(f"poll {result.polls}: {len(now)} files; never run: running")
                    run = True
                elif digest(now) != before_hash:
                    say(
                        f"poll {result.polls}: {len(now)} files, changed since the last run: "
                        "running"
                    )
                    run = True
                else:
                    say(f"poll {result.polls}: {len(now)} files, unchanged since the last run")
            else:
                diff = changes(before, now)
                if any(diff.values()):
                    say(f"poll {result.polls}: {_describe(diff)}: running")
                    run = True
                else:
                    say(f"poll {result.polls}: no change")
        if run:
            try:
                report = run_pipeline(ws, path, log=run_log, trigger="watch")
            except PipelineBusy as exc:
                say(f"not run: {exc}; will look again")
                now = before  # still to do: compare with the same listing next time
            except AutovisionError as exc:
                say(f"run failed: {exc}")
                result.runs.append({"run_id": None, "status": "failed", "message": str(exc)})
            else:
                say(f"run {report.run_id}: {report.status}: {report.message}")
                result.runs.append(
                    {"run_id": report.run_id, "status": report.status, "message": report.message}
                )
        if now is not None:
            before = now
        if max_runs is not None and len(result.runs) >= max_runs:
            say(f"stopping after {len(result.runs)} run(s)")
            break
        if max_polls is not None and result.polls >= max_polls:
            break
        stop.wait(every)
    return result
