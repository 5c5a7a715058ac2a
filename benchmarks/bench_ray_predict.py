"""Batch prediction on Ray Data next to the local pipeline: the same 2,000 JPEGs, the same
EfficientNet-Lite0 (224 px) package, in the same run.

    .venv/bin/python benchmarks/bench_ray_predict.py [--images 2000] [--batch-size 64]
        [--address HOST:PORT] [--actors N]

Without ``--address`` a Ray cluster is started on this machine (every core) and stopped
afterwards; its start is timed apart. Measures images/s and the time to the first output
line (from the call, so the Ray figure includes starting the actor pool and loading the
model in it). Prints a table and writes ``benchmarks/results/ray_predict.json``; the package
and images are the ones ``bench_batch_predict.py`` caches under ``.cache/bench/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _timed(run: Callable[..., Any], **kwargs: Any) -> tuple[Any, float]:
    """Run a batch prediction; also return the seconds until its first written line."""
    start = time.perf_counter()
    first: list[float] = []

    def progress(done: int, total: int | None) -> None:
        if done and not first:
            first.append(time.perf_counter() - start)

    result = run(progress=progress, **kwargs)
    return result, first[0] if first else float("nan")


def _predictions(path: Path) -> dict[str, list[str]]:
    rows = (json.loads(line) for line in path.read_text().splitlines())
    return {r["instance"]["content"]: r["prediction"]["ids"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--address", default=None, help="An existing Ray cluster.")
    parser.add_argument("--actors", type=int, default=None)
    args = parser.parse_args()

    import ray
    from bench_batch_predict import (
        bench_images,
        bench_package,
        machine,
        print_table,
        say,
        write_results,
    )

    from autovision.models.package import ModelPackage
    from autovision.predict import predict_batch
    from autovision.predict.raydata import predict_batch_ray

    pkg_dir = bench_package()
    folder = bench_images(args.images)
    package = ModelPackage.load(pkg_dir)
    t0 = time.perf_counter()
    if args.address:
        ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), logging_level="WARNING", log_to_driver=False)
    ray_start = time.perf_counter() - t0
    cpus = ray.cluster_resources().get("CPU", 0)
    say(f"Ray cluster: {cpus:g} CPUs, joined in {ray_start:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        common = {"model": package, "inputs": folder, "batch_size": args.batch_size}
        say(f"local pipeline, {args.images} images ...")
        local, local_first = _timed(predict_batch, output=Path(tmp) / "local.jsonl", **common)
        say(f"Ray Data, {args.images} images ...")
        on_ray, ray_first = _timed(
            predict_batch_ray,
            output=Path(tmp) / "ray.jsonl",
            address=args.address or "auto",
            actors=args.actors,
            **common,
        )
        same = _predictions(local.output) == _predictions(on_ray.output)
    ray.shutdown()
    assert local.predicted == on_ray.predicted == args.images, (local, on_ray)

    rows = [
        ("pipeline", "images/s", "seconds", "first output s"),
        (
            f"local predict_batch ({os.cpu_count()} decode threads)",
            f"{local.images_per_second:.1f}",
            f"{local.seconds:.1f}",
            f"{local_first:.2f}",
        ),
        (
            f"Ray Data ({cpus:g} CPUs, actors {args.actors or 'auto'})",
            f"{on_ray.images_per_second:.1f}",
            f"{on_ray.seconds:.1f}",
            f"{ray_first:.2f}",
        ),
    ]
    print_table(rows)
    print(f"same labels for every image: {same}; Ray cluster start {ray_start:.1f} s (apart)")
    path = write_results(
        "ray_predict",
        {
            "images": args.images,
            "batch_size": args.batch_size,
            "model": "efficientnet_lite0 224 px fp32",
            "ray_cpus": cpus,
            "ray_start_seconds": round(ray_start, 2),
            "same_labels": same,
            "local": {**local.to_dict(), "first_output_seconds": round(local_first, 3)},
            "ray": {**on_ray.to_dict(), "first_output_seconds": round(ray_first, 3)},
            "machine": machine(),
        },
    )
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
