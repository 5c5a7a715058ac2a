"""Worker processes: started in a session of their own, checked and stopped by pid.

A worker is ``python -m autovision.jobs.worker JOB_ID --workspace PATH`` started with
``start_new_session=True``: it outlives the console that started it, and its process group
(the worker and anything it starts) is what a cancel stops. Before signalling a pid we check
its command line names the job, so a pid the system gave to another process since is left
alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from autovision.workspace import settings

WORKER_MODULE = "autovision.jobs.worker"
_CHILDREN: dict[int, subprocess.Popen] = {}  # workers this process started (reaped on check)


def log_path(ws: Any, job_id: str) -> Path:
    """The worker's stdout and stderr (appended by every attempt)."""
    return Path(ws.root) / "jobs" / f"{job_id}.log"


def spawn(ws: Any, job_id: str) -> int:
    """Start the worker of ``job_id``; its pid. The workspace's database and blob URLs go
    through the environment (as ``AUTOVISION_DB_URL``), so the worker opens the same one even
    when the caller's workspace was opened with explicit URLs."""
    env = os.environ.copy()
    env[settings.ENV_DB_URL] = ws.db_url
    env[settings.ENV_BLOB_URL] = ws.blobs.url
    env.pop(settings.ENV_WORKSPACE, None)
    src = Path(__file__).resolve().parents[2]
    if src.name != "site-packages":  # run from a checkout: the worker imports the same code
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    log = log_path(ws, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, job_id, "--workspace", str(ws.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ws.root),
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def reap() -> None:
    """Collect the exit status of this process's finished workers (no zombies left)."""
    for child in list(_CHILDREN.values()):
        child.poll()


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def alive(pid: int | None, job_id: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie), and, where ``/proc`` tells, is ``job_id``'s
    worker."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not our worker
        return False
    if _zombie(pid):
        return False
    cmd = _cmdline(pid)
    if job_id is not None and cmd is not None:
        return WORKER_MODULE in cmd and job_id in cmd
    return True


def stop(pid: int | None, job_id: str, grace_s: float = 10.0) -> bool:
    """SIGTERM to the worker's process group, SIGKILL after ``grace_s``; whether it is gone."""
    if not alive(pid, job_id):
        return True
    assert pid is not None
    _signal_group(pid, signal.SIGTERM)
    end = time.monotonic() + grace_s
    while time.monotonic() < end:
        if not alive(pid, job_id):
            return True
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        if not alive(pid, job_id):
            return True
        time.sleep(0.05)
    return False


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the worker leads its own session: its group id is its pid


def wait(pid: int, timeout: float) -> int | None:
    """The exit status of a worker this process started (None if it still runs)."""
    child = _CHILDREN.get(pid)
    if child is None:
        return None
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
