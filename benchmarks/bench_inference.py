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


def measure(
    runs: dict[str, Callable[[], object]], batch: int, warmup: int, reps: int, rounds: int = 3
) -> list:
    """Time every runtime ``reps`` times in ``rounds`` blocks, alternating runtimes between
    blocks so that load from other processes hits all of them alike; median reported.

    Blocks (not single runs) alternate because ONNX Runtime's and PyTorch's thread pools
    spin-wait after each call and would steal each other's cores; a pause follows each block.
    """
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    per_round = [reps // rounds + (1 if r < reps % rounds else 0) for r in range(rounds)]
    for n in per_round:
        for name, run in runs.items():
            for _ in range(warmup):
                run()
            for _ in range(n):
                c0, t0 = time.process_time(), time.perf_counter()
                run()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            time.sleep(0.5)
    out = []
    for name in runs:
        med = statistics.median(wall[name])
        out.append(
            {
                "runtime": name,
                "batch": batch,
                "ms_per_batch": round(1000 * med, 2),
                "images_per_s": round(batch / med, 2),
                "ms_per_batch_min": round(1000 * min(wall[name]), 2),
                "cpu_ms_per_image": round(1000 * statistics.median(cpu[name]) / batch, 2),
                "repetitions": reps,
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps-1", type=int, default=24, help="repetitions at batch 1")
    ap.add_argument("--reps-32", type=int, default=6, help="repetitions at batch 32")
    ap.add_argument(
        "--threads",
        default="",
        help="comma-separated thread counts to measure (default: all cores, then 1: the "
        "1-thread figures hold up better when other processes use the cores)",
    )
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

    cores = os.cpu_count() or 1
    thread_counts = [int(t) for t in args.threads.split(",") if t] or sorted(
        {cores, 1}, reverse=True
    )
    load_before = os.getloadavg()
    photos = sorted(_bench_data().photos_jpeg().glob("*.jpg"))
    cfg = get_backbone_cfg(BACKBONE)
    spec = Preprocessing(input_size=SIZE, mean=cfg.mean, std=cfg.std)

    def inputs(files: list[Path]) -> np.ndarray:
        return preprocess([Image.open(f).convert("RGB") for f in files], spec)

    print(f"[bench] {BACKBONE} @ {SIZE}px, threads {thread_counts}, {_cpu_name()}", flush=True)
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

        x32 = inputs(photos[1000:1032])
        batches = {1: x32[:1], 32: x32}
        eager = torch.nn.Sequential(model, torch.nn.Softmax(dim=-1)).eval()
        results = []
        for threads in thread_counts:
            torch.set_num_threads(threads)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.log_severity_level = 3
            sessions = {
                name: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                for name, path in (
                    ("onnxruntime-fp32", pkg.onnx_path),
                    ("onnxruntime-int8", int8_path),
                )
            }
            for batch, reps in ((1, args.reps_1), (32, args.reps_32)):
                x = batches[batch]
                xt = torch.from_numpy(x)

                def run_eager(xt: torch.Tensor = xt) -> None:
                    with torch.inference_mode():
                        eager(xt)

                runs: dict[str, Callable[[], object]] = {
                    name: (lambda s=sess, x=x: s.run(None, {"input": x}))
                    for name, sess in sessions.items()
                }
                runs["pytorch-eager-fp32"] = run_eager
                print(f"[bench] {threads} threads, batch {batch}: {reps} runs each", flush=True)
                measured = measure(runs, batch, warmup=2 if batch == 1 else 1, reps=reps)
                results += [{"threads": threads, **r} for r in measured]

        # int8 accuracy proxy: top-1 agreement with fp32 on photos not used for calibration
        files = photos[1000 : 1000 + args.agreement]
        agree = n = 0
        for i in range(0, len(files), 32):
            x = inputs(files[i : i + 32])
            fp = sessions["onnxruntime-fp32"].run(None, {"input": x})[0].argmax(1)
            q = sessions["onnxruntime-int8"].run(None, {"input": x})[0].argmax(1)
            agree += int((fp == q).sum())
            n += len(x)

    def get(runtime: str, batch: int, threads: int) -> float:
        return next(
            r["ms_per_batch"]
            for r in results
            if (r["runtime"], r["batch"], r["threads"]) == (runtime, batch, threads)
        )

    speedups = {
        f"{a}_vs_{b}_batch{bs}_threads{th}": round(get(b, bs, th) / get(a, bs, th), 2)
        for th in thread_counts
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
        "threads": thread_counts,
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
    print(f"{out['model']} @ {out['input_size']} px, {out['cpu']}, {out['cores']} cores")
    print(f"load average before/after: {out['load_average_before']} / {out['load_average_after']}")
    cols = (("runtime", "<22"), ("threads", ">8"), ("batch", ">6"), ("ms/batch", ">11"))
    cols += (("images/s", ">10"), ("cpu ms/img", ">12"))
    head = "".join(f"{name:{fmt}}" for name, fmt in cols)
    print(head)
    print("-" * len(head))
    for r in out["results"]:
        print(
            f"{r['runtime']:<22}{r['threads']:>8}{r['batch']:>6}{r['ms_per_batch']:>11.1f}"
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
