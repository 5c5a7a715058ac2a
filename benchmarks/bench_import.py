"""Import benchmark: photo-like 640x480 JPEGs imported through a CSV, images/s and peak RSS.

    .venv/bin/python benchmarks/bench_import.py                  # 2,000 images (default)
    .venv/bin/python benchmarks/bench_import.py --memory-check   # 50,000 rows: 2,000 files x 25
    .venv/bin/python benchmarks/bench_import.py --images 50000   # 50,000 distinct files (slow to
                                                                 # generate, about 3 GB)

Each measurement runs in a fresh child process whose whole process tree (the importer's
workers included) is sampled for RSS; summed RSS over-counts pages the forked workers share
with the parent, so the figure is an upper bound. Baselines on the same files in the same
run: the importer with one process, and a plain single-process Pillow loop (read, full
decode to RGB). Results go to ``benchmarks/results/import.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402  (benchmarks/datasets.py: cached sample data)

RESULTS = HERE / "results"
LABELS = ("astronaut", "chelsea", "coffee", "rocket", "hubble", "motorcycle")
TARGET_IMAGES_PER_S = 200
TARGET_RSS_MB_50K = 2048


def build_source(n: int, size: tuple[int, int], repeat: int = 1) -> Path:
    """``n`` cached JPEGs and a cloud-AutoML CSV naming each ``repeat`` times (label = source
    photo). Repeated rows are separate items, so the importer does all its per-row work."""
    photos = datasets.photos_jpeg(n, size)
    csv_dir = datasets.CACHE / f"import-{n}-{size[0]}x{size[1]}"
    csv_path = csv_dir / ("labels.csv" if repeat == 1 else f"labels-x{repeat}.csv")
    if not csv_path.exists():
        csv_dir.mkdir(parents=True, exist_ok=True)
        rows = [
            f"{photos / f'{i:05d}.jpg'},{LABELS[i % len(LABELS)]}"
            for _ in range(repeat)
            for i in range(n)
        ]
        tmp = csv_path.with_suffix(".tmp")
        tmp.write_text("\n".join(rows) + "\n")
        tmp.rename(csv_path)
    return csv_path


# ---- child side: one measurement ----------------------------------------------------------


def cpu_seconds() -> float:
    """User + system time of this process and its finished children (the pool workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child_import(source: str, workers: int | None) -> dict:
    from autovision.data.importer import import_dataset
    from autovision.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        ws = Workspace(Path(tmp) / "ws")
        start, cpu = time.perf_counter(), cpu_seconds()
        # the CSV names the cached photos by absolute path, in a sibling folder
        result = import_dataset(
            ws, "bench", source, workers=workers, allow_roots=[datasets.CACHE]
        ).to_dict()
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {
        "images": result["images"],
        "problems": len(result["problems"]),
        "seconds": elapsed,
        "cpu_seconds": cpu,
    }


def child_pillow(source: str) -> dict:
    from PIL import Image

    paths = [line.split(",", 1)[0] for line in Path(source).read_text().splitlines() if line]
    start, cpu = time.perf_counter(), cpu_seconds()
    for p in paths:
        with open(p, "rb") as fh, Image.open(fh) as img:
            img.convert("RGB").load()
    return {
        "images": len(paths),
        "problems": 0,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu,
    }


# ---- parent side: run a child, sample its tree's memory -----------------------------------


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def measure(args: list[str]) -> dict:
    """Run ``bench_import.py --child ...`` and sample the RSS of its process tree."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss(ps))
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / 2**20, 1)
    result["images_per_s"] = round(result["images"] / result["seconds"], 1)
    result["cpu_ms_per_image"] = round(1000 * result["cpu_seconds"] / result["images"], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="number of JPEGs (2000)")
    parser.add_argument("--size", default="640x480", help="image size WxH (640x480)")
    parser.add_argument("--repeat", type=int, default=1, help="rows per file (1)")
    parser.add_argument(
        "--memory-check",
        action="store_true",
        help="50,000 rows (2,000 files x 25), import only: the < 2 GB RSS check",
    )
    parser.add_argument("--workers", type=int, default=None, help="pool size (cpu count)")
    parser.add_argument("--no-baselines", action="store_true", help="only the import itself")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, source, *rest = args.child
        if kind == "import":
            workers = int(rest[0]) if rest and rest[0] != "auto" else None
            print(json.dumps(child_import(source, workers)))
        else:
            print(json.dumps(child_pillow(source)))
        return 0

    if args.memory_check:
        args.repeat, args.no_baselines = 50_000 // args.images, True
    w, h = (int(v) for v in args.size.lower().split("x"))
    source = str(build_source(args.images, (w, h), args.repeat))
    rows_total = args.images * args.repeat
    workers = args.workers or os.cpu_count() or 1
    runs = {f"autovision import, {workers} workers": ["import", source, str(workers)]}
    if not args.no_baselines:
        runs["autovision import, 1 process"] = ["import", source, "1"]
        runs["baseline: Pillow full decode loop, 1 process"] = ["pillow", source]
    rows = []
    for name, child_args in runs.items():
        print(f"[bench-import] {name} ...", flush=True)
        rows.append({"name": name, **measure(child_args)})

    print(
        f"\nimport of {rows_total} rows ({args.images} JPEG files {w}x{h}) on {os.cpu_count()} CPUs"
    )
    print(
        f"{'run':<48} {'images':>7} {'seconds':>8} {'images/s':>9} {'CPU ms/img':>11} "
        f"{'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r['name']:<48} {r['images']:>7} {r['seconds']:>8.2f} "
            f"{r['images_per_s']:>9.1f} {r['cpu_ms_per_image']:>11.2f} {r['peak_rss_mb']:>12.1f}"
        )
    print(
        f"(CPU ms/img: user+system time of the process tree per image; on {os.cpu_count()} "
        f"otherwise idle CPUs the pool's ceiling is about "
        f"{1000 * (os.cpu_count() or 1) / max(rows[0]['cpu_ms_per_image'], 1e-9):.0f} images/s)"
    )
    main_run = rows[0]
    ok_speed = main_run["images_per_s"] >= TARGET_IMAGES_PER_S
    ok_mem = rows_total < 50_000 or main_run["peak_rss_mb"] < TARGET_RSS_MB_50K
    print(
        f"\ntarget >= {TARGET_IMAGES_PER_S} images/s: {'met' if ok_speed else 'NOT met'}"
        + (
            f"; 50,000 images < {TARGET_RSS_MB_50K} MB RSS: {'met' if ok_mem else 'NOT met'}"
            if rows_total >= 50_000
            else ""
        )
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "import.json" if rows_total == 2000 else f"import-{rows_total}.json"
    (RESULTS / name).write_text(
        json.dumps(
            {
                "benchmark": "import",
                "rows": rows_total,
                "files": args.images,
                "size": [w, h],
                "cpus": os.cpu_count(),
                "runs": rows,
                "target_images_per_s": TARGET_IMAGES_PER_S,
                "met": ok_speed and ok_mem,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
