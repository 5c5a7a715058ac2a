"""``autovision serve`` as a subprocess for the server benchmarks (serving, shadow, soak):
a free loopback port, a server started and waited for until ready, and a gentle stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str,
    ws_dir: Path,
    port: int,
    log_path: Path,
    extra: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    append: bool = False,
) -> subprocess.Popen:
    """``autovision serve MODEL`` on 127.0.0.1:``port`` (plus ``extra`` options), logging to
    ``log_path``; returns once /v2/health/ready answers 200, exits if it does not in 120 s."""
    cmd = [sys.executable, "-m", "autovision.cli.main", "serve", model]
    cmd += ["--port", str(port), "--workspace", str(ws_dir), *extra]
    log = open(log_path, "a" if append else "w")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server not ready after 120 s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
