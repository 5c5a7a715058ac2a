"""Imports started from the console: each runs :func:`autovision.data.importer.import_dataset`
in a background thread of the console process, with its progress kept in memory for the
progress bar (enough for wave 1: an import lost with a console restart is simply redone).

An upload is saved under ``WORKSPACE/tmp/console-upload-*`` (never a path the client
names) and removed when the import ends. A CSV/JSONL upload may come with an archive of
its images, unpacked beside it: its rows can only name files inside that folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovision.console.auth import User, audit_as
from autovision.errors import AutovisionError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
INDEX_SUFFIXES = (".csv", ".jsonl")
MAX_JOBS = 200  # finished jobs kept for their result page
PROBLEMS_SHOWN = 20
LABELS_SHOWN = 12


def upload_suffix(filename: str | None, allowed: tuple[str, ...]) -> str | None:
    """The suffix of an uploaded file's name when it is one of ``allowed`` (the name itself is
    never used on disk)."""
    low = (filename or "").lower()
    return next((s for s in sorted(allowed, key=len, reverse=True) if low.endswith(s)), None)


@dataclass
class ImportJob:
    id: str
    dataset: str
    user: str
    source: str
    status: str = "queued"  # queued | unpacking | importing | analysing | done | failed
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status not in ("done", "failed")

    @property
    def percent(self) -> int:
        if self.status in ("done", "analysing"):
            return 100
        return int(100 * self.done / self.total) if self.total else 0


class ImportJobs:
    """The console's imports, by opaque id."""

    def __init__(self, ws: Any, summaries: Any = None) -> None:
        self.ws = ws
        self.summaries = summaries
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def upload_dir(self) -> Path:
        parent = Path(self.ws.root) / "tmp"
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="console-upload-", dir=parent))

    def get(self, job_id: str, user: User) -> ImportJob | None:
        """A job its starter (or an admin) may see; None otherwise."""
        job = self._jobs.get(job_id)
        if job is None or (job.user != user.name and user.role != "admin"):
            return None
        return job

    def start(
        self,
        user: User,
        name: str,
        source: str,
        *,
        shown: str,
        cleanup: Path | None = None,
        images_archive: str | None = None,
        **kwargs: Any,
    ) -> ImportJob:
        """Start importing ``source`` as a new version of ``name``; ``images_archive`` is
        unpacked into ``source``'s folder first; ``cleanup`` is removed at the end."""
        job = ImportJob(id=secrets.token_urlsafe(12), dataset=name, user=user.name, source=shown)
        with self._lock:
            if len(self._jobs) >= MAX_JOBS:
                for old in [j for j in self._jobs.values() if not j.running][: MAX_JOBS // 2]:
                    self._jobs.pop(old.id, None)
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=self._run,
            args=(job, user, source, cleanup, images_archive, kwargs),
            name=f"console-import-{job.id}",
            daemon=True,
        )
        thread.start()
        return job

    def _run(
        self,
        job: ImportJob,
        user: User,
        source: str,
        cleanup: Path | None,
        images_archive: str | None,
        kwargs: dict[str, Any],
    ) -> None:
        from autovision.data import archive
        from autovision.data.importer import ImportFailed, import_dataset

        def progress(done: int, total: int) -> None:
            job.status, job.done, job.total = "importing", done, total

        try:
            with audit_as(user):
                if images_archive is not None:
                    job.status = "unpacking"
                    refused = archive.extract_archive(images_archive, Path(source).parent)
                    os.unlink(images_archive)
                    job.problems.extend(_problem(p) for p in refused)
                job.status = "importing"
                shown = job.source if cleanup is not None else None  # an upload's own name
                result = import_dataset(
                    self.ws, job.dataset, source, progress=progress, shown=shown, **kwargs
                )
            out = result.to_dict()
            job.problems.extend(_problem(p) for p in out.get("problems", []))
            job.status = "analysing"
            if self.summaries is not None:
                self.summaries.compute(result.version)
            job.result = {
                "dataset": out["dataset"],
                "version": out["version"],
                "images": out["images"],
                "labels": len(out["labels"]),
                "label_names": sorted(out["labels"])[:LABELS_SHOWN],
                "splits": out["splits"],
            }
            job.status = "done"
        except ImportFailed as exc:
            job.problems.extend(_problem(p) for p in exc.problems)
            job.error, job.status = str(exc), "failed"
        except AutovisionError as exc:
            job.error, job.status = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
            job.error, job.status = f"the import stopped: {type(exc).__name__}: {exc}", "failed"
        finally:
            if cleanup is not None:
                job.error = _hide(job.error, cleanup)
                for p in job.problems:
                    p["source"] = _hide(p["source"], cleanup)
                    p["message"] = _hide(p["message"], cleanup)
            job.finished = time.time()
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)


def _hide(text: str | None, folder: Path) -> str | None:
    """Messages name the upload's files relative to the upload, not the server's temp path."""
    if not text:
        return text
    return text.replace(f"{folder}{os.sep}data{os.sep}", "").replace(f"{folder}{os.sep}", "")


def _problem(p: Any) -> dict[str, Any]:
    d = p if isinstance(p, dict) else p.to_dict()
    return {
        "source": str(d.get("source", "")),
        "line": d.get("line"),
        "reason": str(d.get("reason", "")),
        "message": str(d.get("message", "")),
    }
