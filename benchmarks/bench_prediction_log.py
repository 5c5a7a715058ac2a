"""The prediction server with the prediction log on and off, in the same run.

The EfficientNet-Lite0 package of ``bench_serving.py`` (224 px, random 10-class head) served
by ``autovision serve`` on 127.0.0.1 twice: with ``--no-log``, and with the log on (every
request, images stored, embeddings from the same ORT run). For each: images/s and p50/p99 at
concurrency 8 for ``--duration`` seconds, and p50 at concurrency 1 (one 224x224 JPEG per
Vertex JSON request, the load generator of ``bench_serving.py``). With the log, also the
records written and the records dropped (a full log queue). Target: throughput with the log
at least 95% of without.

    .venv/bin/python benchmarks/bench_prediction_log.py [--duration 20] [--sequential 60]

The two servers run alternately ``--rounds`` times (ABBA...) and each figure is the median
over rounds, so that a change in the machine's load hits both alike.

Prints a table and writes ``benchmarks/results/prediction_log.json``.
"""

from __future__ import annotations

import argparse
import asyncio
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
import _server  # noqa: E402
from _server import free_port, stop  # noqa: E402
from bench_batch_predict import (  # noqa: E402
    CACHE,
    bench_package,
    machine,
    print_table,
    say,
    write_results,
)
from bench_serving import MODEL_ID, _load, request_bodies, sequential  # noqa: E402

TARGET = 0.95


def start_server(ws_dir: Path, port: int, logging_on: bool) -> subprocess.Popen:
    """``autovision serve`` of the bench model, with or without the prediction log, ready."""
    extra = () if logging_on else ("--no-log",)
    return _server.start_server(
        MODEL_ID, ws_dir, port, CACHE / "bench-plog-server.log", extra, append=True
    )


def dropped(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = re.findall(r"^autovision_prediction_log_dropped_total(?:{[^}]*})? (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def records(ws_dir: Path) -> int:
    from autovision.monitoring.log import query
    from autovision.workspace import Workspace

    return len(query(Workspace(ws_dir), model_id=MODEL_ID))


def measure(ws_dir: Path, bodies: list[bytes], args: Any, logging_on: bool) -> dict[str, Any]:
    port = free_port()
    say(f"serve {MODEL_ID} {'with' if logging_on else 'without'} the log on port {port} ...")
    before = records(ws_dir)
    proc = start_server(ws_dir, port, logging_on)
    try:
        say(f"  concurrency 1, {args.sequential} requests ...")
        seq = sequential(port, bodies, args.sequential)
        say(f"  concurrency {args.concurrency}, {args.duration:.0f} s ...")
        loaded = asyncio.run(_load(port, bodies, args.concurrency, 10**9, args.duration))
        drops = dropped(port)
    finally:
        stop(proc)  # flushes the log writer
    counts = {"records": records(ws_dir) - before, "dropped": drops}
    return {"log": logging_on, "sequential": seq, "loaded": loaded, "counts": counts}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one configuration: each figure the median over rounds, all rounds kept."""
    out = {"log": runs[0]["log"], "rounds": runs, "sequential": {}, "loaded": {}}
    for phase, keys in (("sequential", SEQ_KEYS), ("loaded", LOAD_KEYS)):
        for k in keys:
            out[phase][k] = statistics.median(r[phase][k] for r in runs)
    out["counts"] = {k: sum(r["counts"][k] for r in runs) for k in ("records", "dropped")}
    return out


SEQ_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
LOAD_KEYS = ("images_per_second", "p50_ms", "p90_ms", "p99_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of loaded phase")
    parser.add_argument("--sequential", type=int, default=60, help="requests at concurrency 1")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs of each server")
    args = parser.parse_args()

    from autovision.workspace import Workspace

    pkg_dir = bench_package()
    tmp = Path(tempfile.mkdtemp(prefix="bench-plog-"))
    try:
        ws = Workspace(tmp / "ws")
        ws.register_model(
            MODEL_ID, dataset="bench", dataset_version=1, task="single-label", path=pkg_dir
        )
        bodies = request_bodies(64)
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for i in range(args.rounds):  # alternated, so a load change hits both alike
            order = (("off", False), ("on", True))
            for key, on in order if i % 2 == 0 else order[::-1]:
                runs[key].append(measure(ws.root, bodies, args, on))
        off, on = median_run(runs["off"]), median_run(runs["on"])
        from autovision.monitoring.log import query

        sample = next(iter(query(ws, model_id=MODEL_ID, limit=1)), None)
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
        row("prediction log off (--no-log)", off),
        row("prediction log on (images, embeddings)", on),
    ]
    print_table(rows)
    ratio = on["loaded"]["images_per_second"] / off["loaded"]["images_per_second"]
    p50_delta = on["sequential"]["p50_ms"] - off["sequential"]["p50_ms"]
    counts = on["counts"]
    print(
        f"throughput with the log: {ratio:.1%} of without (target >= {TARGET:.0%}: "
        f"{'met' if ratio >= TARGET else 'NOT met'}); p50 at concurrency 1: {p50_delta:+.1f} ms; "
        f"{counts['records']} records written, {counts['dropped']:.0f} dropped"
    )
    path = write_results(
        "prediction_log",
        {
            "model": {"backbone": "efficientnet_lite0", "input_size": 224, "labels": 10},
            "request": "Vertex JSON, one base64 JPEG 224x224 (quality 90) per request",
            "concurrency": c,
            "rounds": args.rounds,
            "log_off": off,
            "log_on": on,
            "throughput_ratio": ratio,
            "target": TARGET,
            "target_met": ratio >= TARGET,
            "p50_delta_ms_concurrency_1": p50_delta,
            "records_written": counts["records"],
            "records_dropped": counts["dropped"],
            "embedding_dim": len(sample["embedding"] or []) if sample else None,
            "machine": machine(),
            "note": "client and server share the CPU cores; other jobs may run at the same time",
        },
    )
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
