"""Background work of the dataset version page, in threads of the console process (as the
imports of :mod:`autovision.console.imports`): the model-based data checks
(:func:`autovision.checks.run.check_dataset`) started with "Run checks", with their progress
in memory, and the warming of a version's issue index (:func:`autovision.data.gallery.
issue_index`: the data report, seconds at 50,000 images) so that no page request waits for it.

Both live on ``app.state`` and are made on first use (:func:`of_app`).
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from autovision.console.auth import User, audit_as
from autovision.errors import AutovisionError

MAX_JOBS = 100
STAGE_NAMES = {
    "embedding": "embedding the images",
    "embedding_flipped": "embedding the mirrored images",
    "near_duplicates": "looking for near duplicates",
    "label_issues": "looking for label issues",
    "outliers": "looking for outliers",
}


@dataclass
class CheckJob:
    id: str
    dataset: str
    version: int
    user: str
    status: str = "queued"  # queued | running | done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, int] | None = None
    error: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def stage_name(self) -> str:
        return STAGE_NAMES.get(self.stage, self.stage.replace("_", " ") or "starting")


class CheckJobs:
    """The console's check runs, by opaque id; one run at a time per version."""

    def __init__(self, ws: Any, issues: IssueWarmer) -> None:
        self.ws = ws
        self.issues = issues
        self._jobs: dict[str, CheckJob] = {}
        self._lock = threading.Lock()

    def get(self, job_id: str) -> CheckJob | None:
        return self._jobs.get(job_id)

    def latest(self, name: str, version: int) -> CheckJob | None:
        """The latest run of that version (every role sees the checks of a version)."""
        found = [j for j in self._jobs.values() if (j.dataset, j.version) == (name, version)]
        return max(found, key=lambda j: j.started, default=None)

    def start(self, user: User, name: str, version: int) -> CheckJob:
        with self._lock:
            running = self.latest(name, version)
            if running is not None and running.running:
                return running
            if len(self._jobs) >= MAX_JOBS:
                for old in [j for j in self._jobs.values() if not j.running][: MAX_JOBS // 2]:
                    self._jobs.pop(old.id, None)
            job = CheckJob(secrets.token_urlsafe(12), name, version, user.name)
            self._jobs[job.id] = job
        threading.Thread(
            target=self._run, args=(job, user), name=f"console-check-{job.id}", daemon=True
        ).start()
        return job

    def _run(self, job: CheckJob, user: User) -> None:
        def progress(stage: str, done: int, total: int) -> None:
            job.stage, job.done, job.total = stage, done, total

        job.status = "running"
        try:
            # Issue 14's runner (computes the embeddings once, stores each check).
            from autovision.checks.run import check_dataset

            with audit_as(user):
                out = check_dataset(self.ws, job.ref, progress=progress)
            job.result = {
                k: len(out.get(k) or []) for k in ("label_issues", "label_issues_test", "outliers")
            }
            job.result["content_pairs"] = len(
                (out.get("content_duplicates") or {}).get("pairs") or []
            )
            job.stage = "issues"
            self.issues.warm(job.ref, wait=True)  # the new findings in the gallery's filters
            job.status = "done"
        except ImportError as exc:
            job.error = f"the data checks are not installed in this version: {exc}"
            job.status = "failed"
        except AutovisionError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
            job.error, job.status = f"the checks stopped: {type(exc).__name__}: {exc}", "failed"
        finally:
            job.finished = time.time()


class IssueWarmer:
    """``ready(ref)``: whether the version's issue index was computed in this process; if
    not, it is computed in the background (one at a time) and ``ready`` says False."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ready: dict[str, str] = {}  # ref -> "ok" | error text
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-issues")

    def ready(self, ref: str) -> bool:
        with self._lock:
            if ref in self._ready:
                return True
        self.warm(ref)
        return False

    def error(self, ref: str) -> str | None:
        found = self._ready.get(ref)
        return None if found in (None, "ok") else found

    def warm(self, ref: str, *, wait: bool = False) -> None:
        if wait:
            self._compute(ref)
            return
        with self._lock:
            if ref in self._pending or ref in self._ready:
                return
            self._pending.add(ref)
        self._pool.submit(self._compute, ref)

    def _compute(self, ref: str) -> None:
        from autovision.data.gallery import issue_index

        try:
            issue_index(self.ws, ref)
            outcome = "ok"
        except Exception as exc:  # noqa: BLE001 - the page says the issues are unknown
            outcome = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._ready[ref] = outcome
            self._pending.discard(ref)


_make_lock = threading.Lock()


def of_app(app: Any) -> tuple[CheckJobs, IssueWarmer]:
    """The app's check jobs and issue warmer (made the first time a page asks)."""
    found = getattr(app.state, "dsversion_jobs", None)
    if found is None:
        with _make_lock:
            found = getattr(app.state, "dsversion_jobs", None)
            if found is None:
                ws = app.state.console.ws
                warmer = IssueWarmer(ws)
                found = (CheckJobs(ws, warmer), warmer)
                app.state.dsversion_jobs = found
    return found
