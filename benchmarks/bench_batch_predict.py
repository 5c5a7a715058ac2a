"""Batch prediction of 2,000 JPEGs with an EfficientNet-Lite0 (224 px) package, next to
ONNX Runtime's own batch throughput for the same model in the same run.

    .venv/bin/python benchmarks/bench_batch_predict.py [--images 2000] [--batch-size 32]

Prints a table and writes ``benchmarks/results/batch_predict.json``. The package and the
generated images are cached under ``.cache/bench/`` (the serving benchmark shares them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "bench"
RESULTS = REPO / "benchmarks" / "results"
LABELS = [f"class_{i}" for i in range(10)]


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bench_package(backbone: str = "efficientnet_lite0", size: int = 224) -> Path:
    """A Lite0 package with a random 10-class head (speed does not depend on the weights)."""
    path = CACHE / f"pkg-{backbone}-{size}"
    if (path / "model.json").is_file():
        return path
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    say(f"building the {backbone} package at {size} px ...")
    torch.manual_seed(0)
    cfg = get_backbone_cfg(backbone)
    try:
        model = create_model(backbone, num_classes=len(LABELS))
    except Exception as exc:  # noqa: BLE001 - pretrained weights are not needed for speed
        say(f"pretrained weights unavailable ({exc}); random weights")
        model = create_model(backbone, num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=size, mean=cfg.mean, std=cfg.std)
    return save_package(
        path,
        model,
        labels=LABELS,
        task="single-label",
        backbone=backbone,
        preprocessing=spec,
        meta={"note": "benchmark package: random classification head"},
    )


def bench_image(i: int, width: int, height: int) -> Image.Image:
    """A photo-like JPEG source: gradient background, a few shapes, sensor noise."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xx / width * 0.6 + yy / height * 0.4)[..., None]
    img = Image.fromarray(np.clip(c0 * (1 - t) + c1 * t, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        box = (x0, y0, x0 + rng.integers(10, width // 2), y0 + rng.integers(10, height // 2))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def bench_images(n: int, width: int = 320, height: int = 240) -> Path:
    """``n`` JPEG files (quality 90) in sub-folders of 500, generated once."""
    root = CACHE / f"jpeg-{width}x{height}-{n}"
    if (root / ".done").exists():
        return root
    say(f"generating {n} JPEGs of {width}x{height} in {root} ...")
    for i in range(n):
        folder = root / f"{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        bench_image(i, width, height).save(folder / f"{i:05d}.jpg", quality=90)
    (root / ".done").write_text(str(n))
    return root


def ort_batch(package: Any, batch_size: int, images: int) -> dict[str, float]:
    """ONNX Runtime alone on preprocessed tensors: images/s at ``batch_size``."""
    s = package.preprocessing.input_size
    x = np.random.default_rng(0).normal(0, 1, (batch_size, 3, s, s)).astype(np.float32)
    package.predict_array(x)  # warm-up
    runs = max(2, images // batch_size)
    start = time.perf_counter()
    for _ in range(runs):
        package.predict_array(x)
    seconds = time.perf_counter() - start
    return {"images_per_second": runs * batch_size / seconds, "seconds": seconds}


def ort_latency(package: Any, runs: int = 60) -> dict[str, float]:
    """ONNX Runtime alone at batch 1: median and p99 milliseconds."""
    s = package.preprocessing.input_size
    x = np.random.default_rng(1).normal(0, 1, (1, 3, s, s)).astype(np.float32)
    for _ in range(5):
        package.predict_array(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        package.predict_array(x)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": statistics.median(times), "p99_ms": float(np.percentile(times, 99))}


def machine() -> dict[str, Any]:
    import onnxruntime

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "load_average": os.getloadavg(),
    }


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "at": datetime.now(UTC).isoformat(), **data}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    from autovision.models.package import ModelPackage
    from autovision.predict import predict_batch

    pkg_dir = bench_package()
    folder = bench_images(args.images)
    package = ModelPackage.load(pkg_dir)

    say("ONNX Runtime alone ...")
    raw = ort_batch(package, args.batch_size, min(args.images, 640))
    latency = ort_latency(package, runs=30)
    say(f"batch prediction of {args.images} images ...")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "preds.jsonl"
        result = predict_batch(
            package, folder, out, batch_size=args.batch_size, workers=args.workers
        )
        lines = len(out.read_text().splitlines())
    assert lines == args.images and result.failed == 0, (lines, result.failed)
    raw_after = ort_batch(package, args.batch_size, min(args.images, 640))
    raw_ips = max(raw["images_per_second"], raw_after["images_per_second"])
    ratio = result.images_per_second / raw_ips

    rows = [
        ("measure", "images/s", "seconds", "vs raw ORT"),
        (
            f"ORT fp32 alone, batch {args.batch_size} (preprocessed tensors)",
            f"{raw_ips:.1f}",
            "",
            "100%",
        ),
        (
            f"predict_batch, {args.images} JPEGs 320x240 -> JSONL",
            f"{result.images_per_second:.1f}",
            f"{result.seconds:.1f}",
            f"{ratio:.0%}",
        ),
        ("ORT fp32 alone, batch 1 latency p50 (ms)", f"{latency['p50_ms']:.1f}", "", ""),
    ]
    print_table(rows)
    path = write_results(
        "batch_predict",
        {
            "model": {"backbone": "efficientnet_lite0", "input_size": 224, "labels": 10},
            "images": args.images,
            "image_size": [320, 240],
            "batch_size": args.batch_size,
            "workers": args.workers or os.cpu_count(),
            "ort_batch_images_per_second": [
                raw["images_per_second"],
                raw_after["images_per_second"],
            ],
            "ort_batch1_latency_ms": latency,
            "predict_batch": result.to_dict(),
            "ratio_to_ort": ratio,
            "machine": machine(),
            "note": "decode + resize (Pillow, threads) share the cores with ONNX Runtime",
        },
    )
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
