"""The prediction server under load, next to ONNX Runtime alone for the same model.

An EfficientNet-Lite0 package at 224 px (random 10-class head) is served by
``autovision serve`` on 127.0.0.1; a lean load generator in this process (raw HTTP/1.1 on
asyncio streams, sharing the CPU cores with the server) sends Vertex-style JSON requests with
one 224x224 JPEG each:

- concurrency 16 for ``--duration`` seconds or ``--requests`` requests: throughput against
  ONNX Runtime's own batch-32 throughput (target >= 85%), p50/p99 latency;
- concurrency 1: p50 latency against ONNX Runtime's batch-1 latency (target <= +5 ms).

    .venv/bin/python benchmarks/bench_serving.py [--duration 40] [--requests 2000]

Prints a table and writes ``benchmarks/results/serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import free_port, start_server, stop  # noqa: E402
from bench_batch_predict import (  # noqa: E402
    CACHE,
    bench_image,
    bench_package,
    machine,
    ort_batch,
    ort_latency,
    print_table,
    say,
    write_results,
)

MODEL_ID = "bench-lite0-224"


def ort_side_by_side(package: Any, batch_size: int, images: int) -> dict[str, float]:
    """ONNX Runtime alone, one single-threaded call per core side by side (the server's own
    way under load): images/s at ``batch_size``."""
    import os
    import threading

    workers = os.cpu_count() or 1
    session = package.new_session(threads=1, spinning=False)
    s = package.preprocessing.input_size
    x = np.random.default_rng(0).normal(0, 1, (batch_size, 3, s, s)).astype(np.float32)
    package.predict_array(x, session)  # warm-up
    runs = max(2, images // batch_size // workers)

    def work() -> None:
        for _ in range(runs):
            package.predict_array(x, session)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return {"images_per_second": runs * batch_size * workers / seconds, "seconds": seconds}


def request_bodies(n: int, size: int = 224) -> list[bytes]:
    """``n`` distinct request bodies, each one JPEG (quality 90), encoded once up front."""
    out = []
    for i in range(n):
        buf = io.BytesIO()
        bench_image(10_000 + i, size, size).save(buf, format="JPEG", quality=90)
        b64 = base64.b64encode(buf.getvalue()).decode("ascii")
        out.append(json.dumps({"instances": [{"content": b64}]}).encode())
    return out


def percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "p50_ms": statistics.median(ms),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": statistics.fmean(ms),
    }


class RawClient:
    """A lean HTTP/1.1 keep-alive client on asyncio streams (what ``wrk``-style generators
    do): requests are pre-built bytes and responses are read by Content-Length, so the load
    generator, which shares the CPU cores with the server here, spends as little of them as
    possible (httpx costs about a millisecond of CPU per request)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def post(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _sequential(port: int, bodies: list[bytes], requests: int) -> dict[str, Any]:
    client = RawClient("127.0.0.1", port, f"/v1/models/{MODEL_ID}:predict")
    raws = [client.request(b) for b in bodies]
    for raw in raws[:5]:
        assert await client.post(raw) == 200
    times = []
    for i in range(requests):
        t0 = time.perf_counter()
        status = await client.post(raws[i % len(raws)])
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    await client.close()
    return {"requests": requests, **percentiles(times)}


def sequential(port: int, bodies: list[bytes], requests: int) -> dict[str, Any]:
    """Concurrency 1: one request after the other on a kept-alive connection."""
    return asyncio.run(_sequential(port, bodies, requests))


async def _load(
    port: int, bodies: list[bytes], concurrency: int, requests: int, duration: float
) -> dict[str, Any]:
    path = f"/v1/models/{MODEL_ID}:predict"
    clients = [RawClient("127.0.0.1", port, path) for _ in range(concurrency)]
    raws = [clients[0].request(b) for b in bodies]
    statuses: dict[int, int] = {}
    times: list[float] = []
    counter = iter(range(10**9))
    # Warm-up: every connection twice, and the batcher's first batches.
    for _ in range(2):
        await asyncio.gather(*(c.post(raws[i % len(raws)]) for i, c in enumerate(clients)))
    deadline = time.perf_counter() + duration

    async def worker(client: RawClient) -> None:
        while time.perf_counter() < deadline:
            i = next(counter)
            if i >= requests:
                return
            t0 = time.perf_counter()
            status = await client.post(raws[i % len(raws)])
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                times.append((time.perf_counter() - t0) * 1000)

    cpu0, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    seconds = time.perf_counter() - start
    client_cpu = time.process_time() - cpu0
    for c in clients:
        await c.close()
    ok = statuses.get(200, 0)
    return {
        "concurrency": concurrency,
        "requests": sum(statuses.values()),
        "ok": ok,
        "statuses": statuses,
        "seconds": seconds,
        "images_per_second": ok / seconds,
        "load_generator_cpu_ms_per_request": 1000 * client_cpu / max(1, ok),
        **percentiles(times),
    }


def batch_sizes(url: str) -> dict[str, float]:
    """Mean images per ONNX Runtime call, from the server's Prometheus metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = re.search(r"^autovision_batch_size_sum(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    count = re.search(r"^autovision_batch_size_count(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    if not (total and count) or float(count.group(1)) == 0:
        return {}
    return {
        "batches": float(count.group(1)),
        "mean_batch_size": float(total.group(1)) / float(count.group(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000, help="cap on loaded requests")
    parser.add_argument("--duration", type=float, default=40.0, help="cap on the loaded phase")
    parser.add_argument("--sequential", type=int, default=60, help="requests at concurrency 1")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-wait-ms", type=float, default=5.0)
    args = parser.parse_args()

    from autovision.models.package import ModelPackage
    from autovision.workspace import Workspace

    pkg_dir = bench_package()
    ws_dir = CACHE / "serving-ws"
    ws = Workspace(ws_dir)
    ws.register_model(
        MODEL_ID, dataset="bench", dataset_version=1, task="single-label", path=pkg_dir
    )
    bodies = request_bodies(64)

    say("ONNX Runtime alone (server not started) ...")
    package = ModelPackage.load(pkg_dir)
    raw = [ort_batch(package, args.max_batch_size, 320)]
    side = [ort_side_by_side(package, 8, 320)]
    raw_latency = [ort_latency(package, runs=40)]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"starting `autovision serve {MODEL_ID}` on {url} ...")
    batch_options = ["--max-batch-size", str(args.max_batch_size)]
    batch_options += ["--max-batch-wait-ms", str(args.max_batch_wait_ms)]
    proc = start_server(MODEL_ID, ws_dir, port, CACHE / "bench-serving-server.log", batch_options)
    try:
        say(f"concurrency 1, {args.sequential} requests ...")
        seq = sequential(port, bodies, args.sequential)
        say(f"concurrency {args.concurrency}, up to {args.duration:.0f} s ...")
        loaded = asyncio.run(_load(port, bodies, args.concurrency, args.requests, args.duration))
        batching = batch_sizes(url)
    finally:
        stop(proc)

    say("ONNX Runtime alone again (server stopped) ...")
    raw.append(ort_batch(package, args.max_batch_size, 320))
    side.append(ort_side_by_side(package, 8, 320))
    raw_latency.append(ort_latency(package, runs=40))
    ort_ips = max(r["images_per_second"] for r in raw)
    side_ips = max(r["images_per_second"] for r in side)
    ort_p50 = min(r["p50_ms"] for r in raw_latency)
    ratio = loaded["images_per_second"] / ort_ips
    ratio_best = loaded["images_per_second"] / max(ort_ips, side_ips)
    overhead = seq["p50_ms"] - ort_p50

    rows = [
        ("measure", "images/s", "p50 ms", "p99 ms", "target", "result"),
        (f"ORT fp32 alone, batch {args.max_batch_size}", f"{ort_ips:.1f}", "", "", "", ""),
        ("ORT fp32, 1 thread per core side by side, batch 8", f"{side_ips:.1f}", "", "", "", ""),
        ("ORT fp32 alone, batch 1", "", f"{ort_p50:.1f}", "", "", ""),
        (
            f"server, {args.concurrency} clients, 1 JPEG/request",
            f"{loaded['images_per_second']:.1f}",
            f"{loaded['p50_ms']:.1f}",
            f"{loaded['p99_ms']:.1f}",
            ">= 85% of ORT",
            f"{ratio:.0%} ({ratio_best:.0%} of the best ORT figure)",
        ),
        (
            "server, 1 client",
            "",
            f"{seq['p50_ms']:.1f}",
            f"{seq['p99_ms']:.1f}",
            "<= ORT + 5 ms",
            f"{overhead:+.1f} ms",
        ),
    ]
    print_table(rows)
    if batching:
        print(f"mean images per ORT call under load: {batching['mean_batch_size']:.1f}")
    path = write_results(
        "serving",
        {
            "model": {"backbone": "efficientnet_lite0", "input_size": 224, "labels": 10},
            "request": "Vertex JSON, one base64 JPEG 224x224 (quality 90) per request",
            "server": {
                "command": f"autovision serve {MODEL_ID}",
                "max_batch_size": args.max_batch_size,
                "max_batch_wait_ms": args.max_batch_wait_ms,
            },
            "ort_batch": raw,
            "ort_batch1_latency": raw_latency,
            "loaded": loaded,
            "sequential": seq,
            "batching": batching,
            "ort_side_by_side": side,
            "throughput_ratio_to_ort": ratio,
            "throughput_ratio_to_best_ort": ratio_best,
            "throughput_target_met": ratio >= 0.85,
            "latency_overhead_ms": overhead,
            "latency_target_met": overhead <= 5.0,
            "machine": machine(),
            "note": "client and server share the CPU cores; other jobs may run at the same time",
        },
    )
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
