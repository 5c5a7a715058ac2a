"""Per-image cost of the quality stats and the perceptual hash, on 640x480 JPEGs, next to
imagehash's pHash of the full-size image (the baseline) in the same run; then the
duplicate search and the data report on 50,000 synthetic items.

    .venv/bin/python benchmarks/bench_quality.py [--images 40] [--repeat 5] [--items 50000]

Prints a table of ms per image and writes ``benchmarks/results/bench_quality.json``.
Images are scikit-image / scikit-learn sample photos resized to 640x480 (synthetic photos
when those are missing), JPEG quality 90. Times are the best of ``--repeat`` passes, wall
clock and CPU (the CPU figure is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DRAFT = (256, 256)  # the importer's draft size: no reduction for 640x480 (480 / 2 < 256)
SUGGESTED_DRAFT = (128, 128)  # JPEG decodes 640x480 at 320x240, still >= ANALYSIS_MAX_SIDE


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _sample_photos() -> list[Image.Image]:
    photos: list[Image.Image] = []
    try:
        import skimage.data as skd

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
            photos.append(Image.fromarray(getattr(skd, name)()).convert("RGB"))
        for name in ("camera", "coins", "moon", "page", "clock", "brick", "grass"):
            photos.append(Image.fromarray(getattr(skd, name)()).convert("RGB"))
    except Exception as exc:  # noqa: BLE001 - optional data source
        say(f"scikit-image samples unavailable ({exc})")
    try:
        from sklearn.datasets import load_sample_images

        photos += [Image.fromarray(a) for a in load_sample_images().images]
    except Exception as exc:  # noqa: BLE001
        say(f"scikit-learn samples unavailable ({exc})")
    return photos


def _synthetic(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(30):
        x0, y0 = rng.uniform(-60, 600), rng.uniform(-60, 440)
        box = (x0, y0, x0 + rng.uniform(40, 300), y0 + rng.uniform(40, 240))
        draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def jpegs(n: int) -> list[bytes]:
    """``n`` 640x480 JPEGs: sample photos, flipped and cropped variants, then synthetic."""
    base = _sample_photos()
    out: list[bytes] = []
    for i in range(n):
        if base:
            img = base[i % len(base)]
            if (i // len(base)) % 2:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = img.resize((640, 480), Image.Resampling.BILINEAR)
        else:
            img = _synthetic(i)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def per_item(fn: Callable[[Any], Any], inputs: list[Any], repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` milliseconds per input (wall and CPU)."""
    for x in inputs[:3]:
        fn(x)
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        for x in inputs:
            fn(x)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    n = len(inputs)
    return {"wall_ms": round(min(walls) / n * 1e3, 3), "cpu_ms": round(min(cpus) / n * 1e3, 3)}


def once(fn: Callable[[], Any]) -> dict[str, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return {
        "wall_s": round(time.perf_counter() - w0, 3),
        "cpu_s": round(time.process_time() - c0, 3),
    }


def synthetic_items(n: int) -> list[Any]:
    """``n`` items with pHash-like hashes (32 bits set, like pHash), 2% exact copies and
    2% near copies (2 bits moved), 7 labels over three splits."""
    from autovision.data.dataset import Item

    rng = np.random.default_rng(0)
    bits = np.argsort(rng.random((n, 64)), axis=1)[:, :32]
    values = (np.uint64(1) << bits.astype(np.uint64)).sum(axis=1, dtype=np.uint64)
    shas = [f"{i:064x}" for i in range(n)]
    for k in range(0, n, 50):  # exact copy
        values[k + 1], shas[k + 1] = values[k], shas[k]
    for k in range(25, n, 50):  # near copy: one bit off, one bit on
        on = int(bits[k, 0])
        off = next(b for b in range(64) if not (int(values[k]) >> b) & 1)
        values[k + 1] = values[k] ^ np.uint64((1 << on) | (1 << off))
    stats = {
        "brightness": 0.5,
        "highlight": 0.9,
        "shadow": 0.1,
        "entropy": 6.0,
        "sharpness": 2.0,
        "channel_diff": 0.5,
        "mean_r": 0.5,
        "mean_g": 0.4,
        "mean_b": 0.3,
    }
    splits = ("train", "train", "train", "validation", "test")
    return [
        Item(
            id=i,
            sha256=shas[i],
            source=f"/data/{i}.jpg",
            labels=(f"label_{i % 7}",),
            split=splits[i % 5],
            width=640,
            height=480,
            format="JPEG",
            phash=f"{int(values[i]):016x}",
            stats=stats,
        )
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args(argv)

    import imagehash

    from autovision.data.dataset import DatasetVersion
    from autovision.data.decode import decode_image
    from autovision.data.duplicates import duplicate_groups, near_duplicate_groups, perceptual_hash
    from autovision.data.quality import analyze, quality_flags, thumbnail
    from autovision.data.report import dataset_report

    say(f"preparing {args.images} 640x480 JPEGs ...")
    data = jpegs(args.images)
    full = [decode_image(d).image for d in data]
    draft = [decode_image(d, draft=DRAFT).image for d in data]
    small = [thumbnail(img) for img in draft]
    say(f"draft decode gives {draft[0].size[0]}x{draft[0].size[1]}; timing ...")

    rows: list[tuple[str, str, Callable[[Any], Any], list[Any]]] = [
        ("decode full (context)", "640x480", lambda d: decode_image(d), data),
        (
            "decode draft (context)",
            f"draft {DRAFT[0]}",
            lambda d: decode_image(d, draft=DRAFT),
            data,
        ),
        (
            "decode draft (context)",
            f"draft {SUGGESTED_DRAFT[0]}",
            lambda d: decode_image(d, draft=SUGGESTED_DRAFT),
            data,
        ),
        ("thumbnail", "draft", thumbnail, draft),
        ("analyze", "draft (importer)", analyze, draft),
        ("analyze", "640x480", analyze, full),
        ("analyze", "thumbnail", analyze, small),
        ("perceptual_hash", "draft (importer)", perceptual_hash, draft),
        ("perceptual_hash", "thumbnail", perceptual_hash, small),
        (
            "analyze + hash",
            "draft (importer)",
            lambda im: (analyze(im), perceptual_hash(im)),
            draft,
        ),
        (
            "thumbnail + analyze + hash",
            "draft (shared copy)",
            lambda im: (lambda s: (analyze(s), perceptual_hash(s)))(thumbnail(im)),
            draft,
        ),
        (
            "importer path now",
            f"bytes, draft {DRAFT[0]}",
            lambda d: (lambda im: (analyze(im), perceptual_hash(im)))(
                decode_image(d, draft=DRAFT).image
            ),
            data,
        ),
        (
            "suggested importer path",
            f"bytes, draft {SUGGESTED_DRAFT[0]}",
            lambda d: (lambda s: (analyze(s), perceptual_hash(s)))(
                thumbnail(decode_image(d, draft=SUGGESTED_DRAFT).image)
            ),
            data,
        ),
        ("baseline imagehash.phash", "640x480", lambda im: str(imagehash.phash(im)), full),
        ("baseline imagehash.dhash", "640x480", lambda im: str(imagehash.dhash(im)), full),
    ]
    per_image = []
    for name, source, fn, inputs in rows:
        r = per_item(fn, inputs, args.repeat)
        per_image.append({"step": name, "input": source, **r})

    say(f"building {args.items} synthetic items ...")
    items = synthetic_items(args.items)
    ds = DatasetVersion(name="bench", version=1, multi_label=False, items=tuple(items))
    near: list[list[int]] = []
    at_scale = {
        "near_duplicate_groups": once(lambda: near.extend(near_duplicate_groups(items))),
        "duplicate_groups": once(lambda: duplicate_groups(items)),
        "quality_flags": once(lambda: quality_flags(items)),
        "dataset_report": once(lambda: dataset_report(ds)),
    }

    print(f"\nper image ({args.images} JPEGs 640x480, best of {args.repeat}):")
    print(f"{'step':30s} {'input':22s} {'wall ms':>9s} {'cpu ms':>9s}")
    for r in per_image:
        print(f"{r['step']:30s} {r['input']:22s} {r['wall_ms']:9.3f} {r['cpu_ms']:9.3f}")
    print(f"\n{args.items} items ({len(near)} near-duplicate groups found):")
    print(f"{'step':30s} {'wall s':>9s} {'cpu s':>9s}")
    for name, r in at_scale.items():
        print(f"{name:30s} {r['wall_s']:9.3f} {r['cpu_s']:9.3f}")

    result = {
        "benchmark": "quality",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
        "images": args.images,
        "image_size": [640, 480],
        "draft": list(DRAFT),
        "suggested_draft": list(SUGGESTED_DRAFT),
        "repeat": args.repeat,
        "per_image": per_image,
        "items": args.items,
        "near_duplicate_groups_found": len(near),
        "at_scale": at_scale,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "bench_quality.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {out.relative_to(REPO)}")
    return result


if __name__ == "__main__":
    main()
