"""Inference throughput of an EfficientNet-Lite0 model at 224 px: ONNX Runtime fp32, PyTorch
eager and ONNX Runtime int8 (static QDQ, as ``autovision export --format onnx-int8`` makes it),
at batch 1 and batch 32, in one run.

    .venv/bin/python benchmarks/bench_inference.py [--reps-1 30] [--reps-32 5] [--threads N]

Each configuration gets warm-up runs, then repetitions; the median is reported as ms per
batch and images per second, with the process CPU time per image (less sensitive to other
work on the machine than wall-clock). Writes ``benchmarks/results/bench_inference.json``.
The model is ImageNet Lite0 (1000 classes) so the int8 model's top-1 agreement with fp32 on
real photos is a meaningful accuracy check.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_inference.json"
BACKBONE = "efficientnet_lite0"
SIZE = 224


def _bench_data():
    spec = importlib.util.spec_from_file_location("_bench_datasets", HERE / "datasets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure(run: Callable[[], object], batch: int, warmup: int, reps: int) -> dict:
    for _ in range(warmup):
        run()
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    med = statistics.median(wall)
    return {
        "batch": batch,
        "ms_per_batch": round(1000 * med, 2),
        "images_per_s": round(batch / med, 2),
        "ms_per_batch_min": round(1000 * min(wall), 2),
        "cpu_ms_per_image": round(1000 * statistics.median(cpu) / batch, 2),
        "repetitions": reps,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps-1", type=int, default=30, help="repetitions at batch 1")
    ap.add_argument("--reps-32", type=int, default=5, help="repetitions at batch 32")
    ap.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")
    ap.add_argument("--calibration", type=int, default=64, help="int8 calibration images")
    ap.add_argument("--agreement", type=int, default=256, help="photos for int8 agreement")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch
    from PIL import Image

    from autovision.models.export import quantize_package
    from autovision.models.package import ModelPackage, library_versions, save_package
    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.models.registry import create_model, get_backbone_cfg

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    photos = sorted(_bench_data().photos_jpeg().glob("*.jpg"))
    cfg = get_backbone_cfg(BACKBONE)
    spec = Preprocessing(input_size=SIZE, mean=cfg.mean, std=cfg.std)

    def inputs(files: list[Path]) -> np.ndarray:
        return preprocess([Image.open(f).convert("RGB") for f in files], spec)

    print(f"[bench] {BACKBONE} @ {SIZE}px, {threads} threads, {_cpu_name()}", flush=True)
    model = create_model(BACKBONE, num_classes=1000, pretrained=True).eval()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        t0 = time.perf_counter()
        pkg_dir = save_package(
            Path(tmp) / "lite0",
            model,
            labels=[str(i) for i in range(1000)],
            task="single-label",
            backbone=BACKBONE,
            preprocessing=spec,
        )
        pkg = ModelPackage(pkg_dir)
        print(f"[bench] ONNX export {time.perf_counter() - t0:.1f}s", flush=True)
        t0 = time.perf_counter()
        int8_path = Path(tmp) / "model.int8.onnx"
        quantize_package(pkg, int8_path, calibration=inputs(photos[: args.calibration]))
        quant_seconds = time.perf_counter() - t0
        print(f"[bench] int8 static quantization {quant_seconds:.1f}s", flush=True)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        sessions = {
            "onnxruntime-fp32": ort.InferenceSession(
                str(pkg.onnx_path), opts, providers=["CPUExecutionProvider"]
            ),
            "onnxruntime-int8": ort.InferenceSession(
                str(int8_path), opts, providers=["CPUExecutionProvider"]
            ),
        }
        x32 = inputs(photos[1000:1032])
        batches = {1: x32[:1], 32: x32}
        eager = torch.nn.Sequential(model, torch.nn.Softmax(dim=-1)).eval()
        results = []
        for batch, reps in ((1, args.reps_1), (32, args.reps_32)):
            x = batches[batch]
            xt = torch.from_numpy(x)
            warmup = 3 if batch == 1 else 1
            for name, sess in sessions.items():
                r = measure(lambda s=sess, x=x: s.run(None, {"input": x}), batch, warmup, reps)
                results.append({"runtime": name, **r})
                print(f"[bench] {name} batch {batch}: {r['ms_per_batch']} ms", flush=True)

            def run_eager(xt: torch.Tensor = xt) -> None:
                with torch.inference_mode():
                    eager(xt)

            r = measure(run_eager, batch, warmup, reps)
            results.append({"runtime": "pytorch-eager-fp32", **r})
            print(f"[bench] pytorch-eager batch {batch}: {r['ms_per_batch']} ms", flush=True)

        # int8 accuracy proxy: top-1 agreement with fp32 on photos not used for calibration
        files = photos[1000 : 1000 + args.agreement]
        agree = n = 0
        for i in range(0, len(files), 32):
            x = inputs(files[i : i + 32])
            fp = sessions["onnxruntime-fp32"].run(None, {"input": x})[0].argmax(1)
            q = sessions["onnxruntime-int8"].run(None, {"input": x})[0].argmax(1)
            agree += int((fp == q).sum())
            n += len(x)

    def get(runtime: str, batch: int) -> dict:
        return next(r for r in results if r["runtime"] == runtime and r["batch"] == batch)

    speedups = {
        f"{a}_vs_{b}_batch{bs}": round(get(b, bs)["ms_per_batch"] / get(a, bs)["ms_per_batch"], 2)
        for bs in (1, 32)
        for a, b in (
            ("onnxruntime-fp32", "pytorch-eager-fp32"),
            ("onnxruntime-int8", "onnxruntime-fp32"),
        )
    }
    out = {
        "benchmark": "inference",
        "model": BACKBONE,
        "input_size": SIZE,
        "classes": 1000,
        "threads": threads,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "results": results,
        "speedups": speedups,
        "int8": {
            "method": "ONNX Runtime static QDQ, per-channel int8 weights, uint8 activations",
            "calibration_images": args.calibration,
            "quantization_seconds": round(quant_seconds, 1),
            "top1_agreement_with_fp32": round(agree / n, 4),
            "agreement_images": n,
        },
        "inputs": "JPEG photos from benchmarks/datasets.py photos_jpeg(), preprocessed once",
        "versions": library_versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _print_table(out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"[bench] wrote {args.output}")
    return out


def _print_table(out: dict) -> None:
    print()
    print(f"{out['model']} @ {out['input_size']} px, {out['threads']} threads, {out['cpu']}")
    print(f"load average before/after: {out['load_average_before']} / {out['load_average_after']}")
    head = f"{'runtime':<22}{'batch':>6}{'ms/batch':>11}{'images/s':>10}{'cpu ms/img':>12}"
    print(head)
    print("-" * len(head))
    for r in out["results"]:
        print(
            f"{r['runtime']:<22}{r['batch']:>6}{r['ms_per_batch']:>11.1f}"
            f"{r['images_per_s']:>10.1f}{r['cpu_ms_per_image']:>12.1f}"
        )
    print()
    for k, v in out["speedups"].items():
        print(f"speedup {k}: {v}x")
    q = out["int8"]
    print(
        f"int8 top-1 agreement with fp32: {q['top1_agreement_with_fp32']:.3f} "
        f"on {q['agreement_images']} photos ({q['calibration_images']} calibration images)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
