"""A soak of the prediction server: ``autovision serve`` on 127.0.0.1 (a tiny compact-CNN
package, 3 labels, built here) called at a steady rate for ``--minutes``: mostly valid
predictions (Vertex JSON and v2 JSON, small PNG/JPEG images), and one request in
``--bad-every`` a bad one (bad base64, a truncated image, an unknown model, broken JSON)
that must get a 4xx. Loopback only; bounded in requests (rate x duration) and in time.

    .venv/bin/python benchmarks/bench_soak.py                  # 10 minutes at 20 req/s
    .venv/bin/python benchmarks/bench_soak.py --minutes 1      # what `make bench` runs

Reports the unexpected error rate (5xx, connection errors, timeouts), wrong statuses (a
valid request not answered 200, a bad one not 4xx), p50/p99 latency and the server's RSS
(psutil) at the start and the end, and compares the first minute (the baseline of the same
run) with the last. Prints a table; writes ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "serving"))
import fuzzing as F  # noqa: E402
from _server import free_port, start_server, stop  # noqa: E402
from bench_batch_predict import machine, print_table, say, write_results  # noqa: E402

TIMEOUT_S = 10.0
CONNECTIONS = 8


@dataclass(frozen=True)
class Req:
    kind: str  # "valid" or "bad"
    name: str
    method: str
    path: str
    body: bytes


def _image(i: int, fmt: str) -> bytes:
    rng = np.random.default_rng(i)
    img = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def requests_mix(n_valid: int = 16) -> tuple[list[Req], list[Req]]:
    """``(valid, bad)`` request templates, each body encoded once."""
    model = F.MODEL
    valid, bad = [], []
    for i in range(n_valid):
        data = _image(i, "JPEG" if i % 2 else "PNG")
        b64 = base64.b64encode(data).decode()
        if i % 4 == 3:
            body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]}
            valid.append(
                Req(
                    "valid",
                    "v2 infer",
                    "POST",
                    f"/v2/models/{model}/infer",
                    json.dumps(body).encode(),
                )
            )
        else:
            valid.append(
                Req(
                    "valid",
                    "vertex predict",
                    "POST",
                    f"/v1/models/{model}:predict",
                    json.dumps({"instances": [{"content": b64}]}).encode(),
                )
            )
    predict = f"/v1/models/{model}:predict"
    truncated = base64.b64encode(_image(99, "PNG")[:100]).decode()
    bad += [
        Req("bad", "bad base64", "POST", predict, b'{"instances": [{"content": "@@@"}]}'),
        Req(
            "bad",
            "truncated png",
            "POST",
            predict,
            json.dumps({"instances": [{"content": truncated}]}).encode(),
        ),
        Req(
            "bad",
            "unknown model",
            "POST",
            "/v1/models/nope:predict",
            b'{"instances": [{"content": "AAAA"}]}',
        ),
        Req("bad", "broken json", "POST", predict, b'{"instances": ['),
    ]
    return valid, bad


class Conn:
    """One keep-alive HTTP/1.1 connection on asyncio streams (reconnects after a close)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, req: Req) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"{req.method} {req.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(req.body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + req.body)
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        status = int(line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        await self.reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def soak(port: int, pid: int, rate: float, seconds: float, bad_every: int) -> dict:
    """Send ``rate`` requests per second for ``seconds`` (open loop: a slow answer does
    not slow the schedule, up to ``CONNECTIONS`` requests in flight)."""
    valid, bad = requests_mix()
    proc = psutil.Process(pid)
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(Conn(port))
    records: list[dict[str, Any]] = []
    rss: list[tuple[float, int]] = []
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int, req: Req) -> None:
        conn = await pool.get()
        t0 = time.perf_counter()
        try:
            status: int | str = await asyncio.wait_for(conn.send(req), TIMEOUT_S)
        except TimeoutError:
            status = "timeout"
            await conn.close()
        except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            status = "connection_error"
            await conn.close()
        finally:
            pool.put_nowait(conn)
        records.append(
            {
                "at": t0 - start,
                "kind": req.kind,
                "name": req.name,
                "status": status,
                "ms": (time.perf_counter() - t0) * 1000,
            }
        )

    async def sample_rss() -> None:
        while True:
            rss.append((time.perf_counter() - start, proc.memory_info().rss))
            await asyncio.sleep(5.0)

    sampler = asyncio.create_task(sample_rss())
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        req = (
            bad[i // bad_every % len(bad)]
            if i % bad_every == bad_every - 1
            else valid[i % len(valid)]
        )
        tasks.append(asyncio.create_task(one(i, req)))
    await asyncio.wait(tasks, timeout=TIMEOUT_S * 2)
    sampler.cancel()
    rss.append((time.perf_counter() - start, proc.memory_info().rss))
    while not pool.empty():
        await pool.get_nowait().close()
    return {
        "records": records,
        "rss": rss,
        "scheduled": total,
        "duration": total / rate,
        "seconds": time.perf_counter() - start,
    }


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    unexpected = [r for r in records if not isinstance(r["status"], int) or r["status"] >= 500]
    wrong = [
        r
        for r in records
        if isinstance(r["status"], int)
        and r["status"] < 500
        and (
            (r["kind"] == "valid") != (r["status"] == 200)
            or (r["kind"] == "bad" and r["status"] < 400)
        )
    ]
    ok_ms = [r["ms"] for r in records if r["kind"] == "valid" and r["status"] == 200]
    return {
        "requests": len(records),
        "statuses": statuses,
        "unexpected_errors": len(unexpected),
        "unexpected_error_rate": len(unexpected) / max(1, len(records)),
        "wrong_status": len(wrong),
        "p50_ms": statistics.median(ok_ms) if ok_ms else float("nan"),
        "p99_ms": float(np.percentile(ok_ms, 99)) if ok_ms else float("nan"),
        "examples": [dict(r) for r in (unexpected + wrong)[:20]],
    }


def _row(label: str, s: dict[str, Any], unexpected: str, rss: str) -> tuple[str, ...]:
    """One row of the table for a ``summarise`` result."""
    return (
        label,
        str(s["requests"]),
        unexpected,
        str(s["wrong_status"]),
        f"{s['p50_ms']:.1f}",
        f"{s['p99_ms']:.1f}",
        rss,
    )


def _rss_at(rss: list[tuple[float, int]], at: float) -> int:
    return min(rss, key=lambda s: abs(s[0] - at))[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--bad-every", type=int, default=20, help="one bad request in N")
    parser.add_argument("--warmup", type=int, default=40, help="requests before measuring")
    args = parser.parse_args()

    from autovision.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    ws = Workspace(tmp / "ws")
    ws.register_model(
        F.MODEL, dataset="toy", dataset_version=1, task="single-label", path=F.build_package(tmp)
    )
    port = free_port()
    say(f"starting `autovision serve {F.MODEL}` on 127.0.0.1:{port} ...")
    proc = start_server(F.MODEL, tmp / "ws", port, tmp / "server.log")
    try:
        valid, _ = requests_mix()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT_S) as client:
            for i in range(args.warmup):
                req = valid[i % len(valid)]
                r = client.post(
                    req.path, content=req.body, headers={"Content-Type": "application/json"}
                )
                assert r.status_code == 200, r.text
        seconds = 60 * args.minutes
        say(f"{args.rate:g} requests/s for {seconds:.0f} s ...")
        run = asyncio.run(soak(port, proc.pid, args.rate, seconds, args.bad_every))
        alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_S).status_code
    finally:
        stop(proc)

    records, rss = run["records"], run["rss"]
    end = run["duration"]
    window = min(60.0, end / 2)
    whole = summarise(records)
    first = summarise([r for r in records if r["at"] < window])
    last = summarise([r for r in records if r["at"] >= end - window])
    rss_start, rss_end = rss[0][1], rss[-1][1]
    rss_first = _rss_at(rss, window)
    mb = 1024 * 1024
    whole_unexpected = f"{whole['unexpected_errors']} ({whole['unexpected_error_rate']:.2%})"
    rows = [
        ("measure", "requests", "unexpected", "wrong status", "p50 ms", "p99 ms", "RSS MB"),
        _row("whole run", whole, whole_unexpected, f"{rss_start / mb:.0f} -> {rss_end / mb:.0f}"),
        _row(
            f"first {window:.0f} s (baseline)",
            first,
            str(first["unexpected_errors"]),
            f"{rss_first / mb:.0f}",
        ),
        _row(f"last {window:.0f} s", last, str(last["unexpected_errors"]), f"{rss_end / mb:.0f}"),
    ]
    print_table(rows)
    ratio = rss_end / rss_start
    drift = last["p50_ms"] / first["p50_ms"] if first["p50_ms"] else float("nan")
    print(
        f"RSS end/start {ratio:.3f} (end / after the first {window:.0f} s: "
        f"{rss_end / rss_first:.3f}); p50 last/first {drift:.2f}; statuses {whole['statuses']}; "
        f"/healthz after: {alive}"
    )
    path = write_results(
        "soak",
        {
            "minutes": args.minutes,
            "rate_per_s": args.rate,
            "bad_every": args.bad_every,
            "scheduled": run["scheduled"],
            "seconds": run["seconds"],
            "whole": whole,
            "first_window": first,
            "last_window": last,
            "window_s": window,
            "rss_bytes": {"start": rss_start, "after_first_window": rss_first, "end": rss_end},
            "rss_ratio_end_start": ratio,
            "rss_samples": rss,
            "p50_ratio_last_first": drift,
            "healthz_after": alive,
            "machine": machine(),
        },
    )
    print(f"results: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if whole["unexpected_errors"] or alive != 200 else 0


if __name__ == "__main__":
    raise SystemExit(main())
