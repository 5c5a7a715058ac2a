"""The prediction server with and without a shadow challenger, in the same run.

The EfficientNet-Lite0 package of ``bench_serving.py`` (224 px, random 10-class head) is
registered twice under one name (``bench@1`` and ``bench@2``: the challenger costs exactly
what the champion costs, the worst case), then served by ``autovision serve`` on 127.0.0.1
twice: ``bench@1`` alone, and ``bench@1 --shadow bench@2``. For each: images/s and p50/p99
at concurrency 8 for ``--duration`` seconds, and p50 at concurrency 1 (one 224x224 JPEG per
Vertex JSON request, the load generator of ``bench_serving.py``). With the shadow, also the
share of requests the challenger answered and the share it dropped (its bounded queue).

    .venv/bin/python benchmarks/bench_shadow.py [--duration 20] [--sequential 60] [--rounds 2]

The two servers run alternately ``--rounds`` times (ABBA...) and each figure is the median
over rounds, so that a change in the machine's load hits both alike.

Prints a table and writes ``benchmarks/results/shadow.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import free_port, start_server, stop  # noqa: E402
from bench_batch_predict import (  # noqa: E402
    CACHE,
    bench_package,
    machine,
    print_table,
    say,
    write_results,
)
from bench_serving import MODEL_ID, _load, request_bodies, sequential  # noqa: E402

CHALLENGER_ID = MODEL_ID + "-b"


def serve(ws_dir: Path, port: int, shadow: str | None, priority: str = "nice") -> subprocess.Popen:
    """``autovision serve`` (champion ``bench@1``, optionally ``--shadow``), ready."""
    env = {**os.environ, "AUTOVISION_SERVE_SHADOW_PRIORITY": priority}
    log = CACHE / "bench-shadow-server.log"
    extra = ["--shadow", shadow] if shadow else []
    return start_server(MODEL_ID, ws_dir, port, log, extra, env=env, append=True)


def shadow_counters(port: int) -> dict[str, float]:
    """The server's ``autovision_shadow_*`` counters (summed over their labels)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name in ("requests", "images", "dropped", "disagreements"):
        values = re.findall(rf"^autovision_shadow_{name}_total(?:{{[^}}]*}})? (\S+)$", text, re.M)
        out[name] = sum(float(v) for v in values)
    return out


def measure(ws_dir: Path, bodies: list[bytes], args: Any, shadow: str | None) -> dict[str, Any]:
    port = free_port()
    say(f"serve {MODEL_ID}{' --shadow ' + shadow if shadow else ''} on port {port} ...")
    proc = serve(ws_dir, port, shadow, args.priority)
    try:
        say(f"  concurrency 1, {args.sequential} requests ...")
        seq = sequential(port, bodies, args.sequential)
        say(f"  concurrency {args.concurrency}, {args.duration:.0f} s ...")
        loaded = asyncio.run(_load(port, bodies, args.concurrency, 10**9, args.duration))
        counters = shadow_counters(port) if shadow else {}
    finally:
        stop(proc)
    return {"shadow": shadow, "sequential": seq, "loaded": loaded, "shadow_counters": counters}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one configuration: each figure the median over rounds, all rounds kept."""
    out = {"shadow": runs[0]["shadow"], "rounds": runs, "sequential": {}, "loaded": {}}
    for phase, keys in (("sequential", SEQ_KEYS), ("loaded", LOAD_KEYS)):
        for k in keys:
            out[phase][k] = statistics.median(r[phase][k] for r in runs)
    out["shadow_counters"] = {
        k: sum(r["shadow_counters"].get(k, 0.0) for r in runs)
        for k in ("requests", "images", "dropped", "disagreements")
    }
    return out


SEQ_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
LOAD_KEYS = ("images_per_second", "p50_ms", "p90_ms", "p99_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of loaded phase")
    parser.add_argument("--sequential", type=int, default=60, help="requests at concurrency 1")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs of each server")
    parser.add_argument(
        "--priority", choices=("nice", "idle"), default="nice", help="the challenger's threads"
    )
    args = parser.parse_args()

    from autovision.workspace import Workspace

    pkg_dir = bench_package()
    tmp = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    try:
        ws = Workspace(tmp / "ws")
        for mid in (MODEL_ID, CHALLENGER_ID):
            ws.register_model(
                mid, dataset="bench", dataset_version=1, task="single-label", path=pkg_dir
            )
        bodies = request_bodies(64)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "shadow": []}
        for i in range(args.rounds):  # alternated, so a load change hits both alike
            order = (("plain", None), ("shadow", "bench@2"))
            for key, shadow in order if i % 2 == 0 else order[::-1]:
                runs[key].append(measure(ws.root, bodies, args, shadow))
        plain, shadowed = median_run(runs["plain"]), median_run(runs["shadow"])
        from autovision.versions.compare import compare

        record = compare(ws, "bench@1", "bench@2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def row(label: str, r: dict[str, Any]) -> tuple[str, ...]:
        lo, seq = r["loaded"], r["sequential"]
        return (
            label,
            f"{lo['images_per_second']:.1f}",
            f"{lo['p50_ms']:.1f}",
            f"{lo['p99_ms']:.1f}",
            f"{seq['p50_ms']:.1f}",
            f"{seq['p99_ms']:.1f}",
        )

    c = args.concurrency
    rows = [
        ("server", f"img/s @{c}", f"p50 @{c}", f"p99 @{c}", "p50 @1", "p99 @1"),
        row("champion alone", plain),
        row("champion + shadow challenger", shadowed),
    ]
    print_table(rows)
    ratio = shadowed["loaded"]["images_per_second"] / plain["loaded"]["images_per_second"]
    p50_delta = shadowed["sequential"]["p50_ms"] - plain["sequential"]["p50_ms"]
    counters = shadowed["shadow_counters"]
    offered = max(1.0, counters.get("requests", 0.0))
    print(
        f"throughput with shadow: {ratio:.0%} of without; p50 at concurrency 1: "
        f"{p50_delta:+.1f} ms; challenger answered {counters.get('images', 0):.0f} of "
        f"{offered:.0f} shadowed requests, dropped {counters.get('dropped', 0) / offered:.0%}; "
        f"{record['n']} records written"
    )
    path = write_results(
        "shadow",
        {
            "model": {"backbone": "efficientnet_lite0", "input_size": 224, "labels": 10},
            "challenger": "the same package as a second version (the same cost)",
            "request": "Vertex JSON, one base64 JPEG 224x224 (quality 90) per request",
            "concurrency": c,
            "rounds": args.rounds,
            "shadow_priority": args.priority,
            "without_shadow": plain,
            "with_shadow": shadowed,
            "throughput_ratio": ratio,
            "p50_delta_ms_concurrency_1": p50_delta,
            "shadow_records": record["n"],
            "shadow_dropped_share": counters.get("dropped", 0) / offered,
            "machine": machine(),
            "note": "client and server share the CPU cores; other jobs may run at the same time",
        },
    )
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
