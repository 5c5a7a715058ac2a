"""Small-data ranking: ``train --cv off`` against ``--cv on`` on scikit-learn's digits.

Per seed: 15 images per label (12 train + 3 validation, so validation has 30 images), 40 test
images per label; linear heads on frozen EfficientNet-Lite0 (224 px), ``--trials 8`` (the
same configurations for both settings), scored on the test split.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_cv_small.py /tmp/bench-cv --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

SPACE = {
    "backbones": ["efficientnet_lite0"],
    "modes": ["linear"],
    "sizes": {"efficientnet_lite0": [224]},
}
TRAIN, VAL, TEST = 12, 3, 40  # images per label


def _workspace(root: Path, seed: int):
    from sklearn.datasets import load_digits

    from autovision.data.dataset import Item
    from autovision.workspace import Workspace

    digits = load_digits()
    ws = Workspace(root / f"seed{seed}")
    rng = np.random.default_rng(seed)
    first = ws.reserve_item_ids("digits", 10 * (TRAIN + VAL + TEST))
    items, k = [], 0
    for c in range(10):
        for j, i in enumerate(rng.permutation(np.flatnonzero(digits.target == c))[:55]):
            split = "train" if j < TRAIN else "validation" if j < TRAIN + VAL else "test"
            px = (digits.images[i] * 255 / 16).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(px).resize((32, 32)).convert("RGB").save(buf, format="PNG")
            sha = ws.blobs.put(buf.getvalue())
            items.append(Item(first + k, sha, f"{c}/{i}.png", (str(c),), split, 32, 32, "PNG"))
            k += 1
    ws.create_version("digits", items, multi_label=False)
    return ws


def main() -> None:
    from autovision.models.package import ModelPackage
    from autovision.search import train

    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trials", type=int, default=8)
    args = ap.parse_args()
    os.environ["AUTOVISION_SEARCH_SPACE"] = json.dumps(SPACE)
    for seed in (int(s) for s in args.seeds.split(",")):
        ws = _workspace(args.workdir, seed)
        test = ws.dataset("digits").split("test")
        images = [ws.load_image(it) for it in test]
        for cv in ("off", "on"):
            t = time.monotonic()
            r = train(ws, "digits", trials=args.trials, cv=cv, seed=seed)
            pkg = ModelPackage.load(r.path)
            pred = pkg.predict_proba(images).argmax(1)
            hits = [pkg.labels[j] == it.label for j, it in zip(pred, test, strict=True)]
            acc = float(np.mean(hits))
            rows = r.to_dict()["ranking"]["trials"]
            print(
                json.dumps(
                    {
                        "seed": seed,
                        "cv": cv,
                        "test_accuracy": round(acc, 4),
                        "validation_accuracy": round(r.validation["accuracy"], 4),
                        "chosen": r.best["trial"],
                        "l2": r.best["l2"],
                        "scores": [round(x["mean"], 3) for x in rows],
                        "seconds": round(time.monotonic() - t, 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
