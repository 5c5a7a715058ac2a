"""Decoding cost of the hostile request of issue 11: 16-bit 6300x6300 grayscale PNGs of
zeros (about 80 KB each, 79 MB decoded), one image and the 64-image request, through the old
unbounded path (Pillow called directly as the server did: full decode, float64 16-bit
conversion) and the new bounded one (``serving.inference.decode_to_pixels`` with the
server's default budgets, JPEG drafting and ``release_memory``).

Each case runs in a fresh child process of this script, so the RSS figures (before, peak,
after) of one case never include another's leftovers; in it, ``--concurrency`` requests
(default 2) run at once in a thread pool, as the server's preprocessing pool runs them (the
one-image cases 3 times over), and "after" is read 1.3 s later (past ``release_memory``'s
interval); "wall s" is per round. The old 64-image request
is timed on ``--old-images`` images (default 3) and its CPU and wall time scaled to 64.

    .venv/bin/python benchmarks/bench_decode_budget.py [--old-images 3] [--concurrency 2]

Prints a table and writes ``benchmarks/results/decode_budget.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "serving"))

INPUT_SIZE = 224
REQUEST_IMAGES = 64
ROUNDS = 3  # the one-image cases: 3 x concurrency requests, so freed blocks get reused


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # resets VmHWM (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")


def _old_decode(data: bytes, spec: Any) -> Any:
    """The server's decode before issue 11: no budget, full-size decode, float64 16-bit."""
    import numpy as np
    from PIL import Image

    from autovision.models.preprocess import resize_image

    img = Image.open(io.BytesIO(data), formats=("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"))
    img.load()
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / 65535.0 if hi > 255 else 1.0
        arr = np.clip(arr * scale, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="L").convert("RGB")
    return resize_image(img.convert("RGB"), spec)


def child(case: str, png_path: str, old_images: int, concurrency: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from autovision.data import decode
    from autovision.models.preprocess import Preprocessing, normalize
    from autovision.serving import inference
    from autovision.serving.errors import ApiError
    from autovision.serving.settings import ServerSettings

    png = Path(png_path).read_bytes()
    spec = Preprocessing(INPUT_SIZE, (0.5,) * 3, (0.5,) * 3)
    settings = ServerSettings()
    job = inference.Job(
        max_image_bytes=settings.max_decoded_bytes_per_image,
        max_request_bytes=settings.max_decoded_bytes_per_request,
    )
    path, what = case.split("-", 1)
    n = 1 if what.startswith("one") else REQUEST_IMAGES
    if path == "old" and n > 1:
        n = old_images
    payloads = [png] * n
    if what.endswith("notrim"):
        decode.release_memory = lambda *a, **k: False
        inference.release_memory = decode.release_memory

    def request(_: int) -> str:
        if path == "old":
            normalize(np.stack([_old_decode(p, spec) for p in payloads]), spec)
            return "200"
        try:
            normalize(inference.decode_to_pixels(payloads, spec, settings.max_pixels, job), spec)
        except ApiError as exc:
            return f"{exc.status} {exc.code}"
        return "200"

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="preprocess")
    gc.collect()
    before = _status_kb("VmRSS")
    _reset_peak()
    cpu0, t0 = time.process_time(), time.perf_counter()
    rounds = ROUNDS if what.startswith("one") else 1
    statuses = set(pool.map(request, range(concurrency * rounds)))
    cpu = (time.process_time() - cpu0) / (concurrency * rounds)
    wall = (time.perf_counter() - t0) / rounds
    peak = _status_kb("VmHWM")
    gc.collect()
    time.sleep(1.3)
    after = _status_kb("VmRSS")
    status = ", ".join(sorted(statuses))
    scale = REQUEST_IMAGES / n if (path == "old" and what.startswith("request")) else 1.0
    return {
        "case": case,
        "images": n,
        "concurrency": concurrency,
        "status": status,
        "rss_before_mb": before / 1024,
        "rss_peak_mb": peak / 1024,
        "rss_after_mb": after / 1024,
        "cpu_s": cpu * scale,
        "wall_s": wall * scale,
        "scaled_to_64": scale != 1.0,
    }


CASES = (
    "old-one",
    "new-one-notrim",
    "new-one",
    "old-request",
    "new-request",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--old-images", type=int, default=3, help="old 64-image request: time this many"
    )
    ap.add_argument("--concurrency", type=int, default=2, help="requests at once per case")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--png", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.png, args.old_images, args.concurrency)))
        return

    from bench_batch_predict import machine, print_table, say, write_results
    from fuzzing import hostile_png  # in the parent only: the children's RSS stays lean

    png = hostile_png()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.png"
        path.write_bytes(png)
        for case in CASES:
            say(f"{case} ...")
            out = subprocess.run(
                [sys.executable, __file__, "--child", case, "--png", str(path)]
                + ["--old-images", str(args.old_images), "--concurrency", str(args.concurrency)],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = [
        ("case", "images", "status", "RSS before MB", "peak MB", "after MB", "CPU s/req", "wall s")
    ]
    for r in rows:
        star = "*" if r["scaled_to_64"] else ""
        table.append(
            (
                r["case"],
                f"{r['images']}{star}",
                r["status"],
                f"{r['rss_before_mb']:.0f}",
                f"{r['rss_peak_mb']:.0f}",
                f"{r['rss_after_mb']:.0f}",
                f"{r['cpu_s']:.2f}{star}",
                f"{r['wall_s']:.2f}{star}",
            )
        )
    print(f"hostile PNG: {len(png)} bytes, 6300x6300 I;16 ({2 * 6300 * 6300} bytes decoded)")
    print(f"{args.concurrency} requests at once; one-image cases: {ROUNDS} rounds")
    print_table(table)
    if any(r["scaled_to_64"] for r in rows):
        print(f"* timed on {args.old_images} images, CPU and wall scaled to {REQUEST_IMAGES}")
    dest = write_results(
        "decode_budget", {"machine": machine(), "png_bytes": len(png), "cases": rows}
    )
    say(f"wrote {dest}")


if __name__ == "__main__":
    main()
