"""Object storage overhead: batch prediction from a local folder to a local file vs from an
``s3://`` prefix to ``s3://`` part objects (a local moto server: what is measured is the
request path, not a real network), and a model package published to and fetched from the
bucket (a fresh machine's first load).

    .venv/bin/python benchmarks/bench_s3.py [--images 500] [--size 128]

Prints a table and writes ``benchmarks/results/s3.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch
    from _s3 import s3_server
    from PIL import Image

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg
    from autovision.predict import predict_batch
    from autovision.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    pkg = save_package(
        tmp / "A" / "models" / "m-bench",
        create_model("compact_cnn", num_classes=3, pretrained=False),
        labels=("a", "b", "c"),
        task="single-label",
        backbone="compact_cnn",
        preprocessing=Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std),
    )
    rng = np.random.default_rng(0)
    local = tmp / "images"
    blobs = {}
    for i in range(args.images):
        buf = io.BytesIO()
        px = rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
        Image.fromarray(px).save(buf, format="JPEG", quality=85)
        rel = f"{'abc'[i % 3]}/{i:05d}.jpg"
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(buf.getvalue())
        blobs[rel] = buf.getvalue()
    out: dict[str, float] = {"images": args.images, "size": args.size, "workers": args.workers}
    with s3_server() as s3:
        client = s3.client()
        for rel, data in blobs.items():
            client.put_object(Bucket=s3.bucket, Key=f"images/{rel}", Body=data)
        for name, src, dst in (
            ("local", str(local), str(tmp / "preds.jsonl")),
            ("s3", s3.url("images") + "/", s3.url("out") + "/"),
        ):
            t0 = time.perf_counter()
            r = predict_batch(pkg, src, dst, workers=args.workers, batch_size=32)
            seconds = time.perf_counter() - t0
            assert r.predicted == args.images, r
            out[f"{name}_images_per_s"] = round(args.images / seconds, 1)
        db = f"sqlite:///{tmp / 'shared.db'}"
        ws_a = Workspace(tmp / "A", db_url=db, blob_url=s3.url("ws"))
        t0 = time.perf_counter()
        ws_a.register_model(
            "m-bench", dataset="d", dataset_version=1, task="single-label", path=pkg
        )
        out["publish_s"] = round(time.perf_counter() - t0, 3)
        ws_b = Workspace(tmp / "B", db_url=db, blob_url=s3.url("ws"))
        t0 = time.perf_counter()
        ws_b.model_path("m-bench")
        out["first_fetch_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        ws_b.model_path("m-bench")
        out["cached_lookup_s"] = round(time.perf_counter() - t0, 3)
        out["package_bytes"] = sum(f.stat().st_size for f in pkg.iterdir())
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "s3.json").write_text(json.dumps(out, indent=2) + "\n")
    for k, v in out.items():
        print(f"{k:>20}  {v}")


if __name__ == "__main__":
    main()
