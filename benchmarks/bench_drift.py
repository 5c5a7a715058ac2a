"""Drift detection power, like Rabanser et al.'s *Failing Loudly* table: detection rate over
``--repeats`` draws of 50, 100, 200 and 500 recent images for mild shifts (brightness -30%,
Gaussian blur radius 2), a strong shift (crops of scikit-image sample photos: another
dataset), a label shift (one class only), and the false-alarm rate on held-out in-distribution
images (must be <= 5%).

    .venv/bin/python benchmarks/bench_drift.py [--repeats 20] [--epochs 8]

Data: scikit-learn's digits as 32x32 RGB images (what ``datasets.digits_folder`` writes),
split 800 train / 400 reference (the model's test split) / 597 held out. Model: the compact
CNN trained briefly here and saved as a real model package, so probabilities and embeddings
come from its ONNX graph; input statistics from ``data.quality.analyze``. Prints the table and
writes ``benchmarks/results/bench_drift.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SIZES = (50, 100, 200, 500)
CONDITIONS = (
    "none (false alarms)",
    "mild: brightness -30%",
    "mild: blur radius 2",
    "strong: other dataset",
    "label: one class",
)


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def digits_images() -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = []
    for img in d.images:
        pixels = np.clip(img * (255.0 / 16.0), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels, mode="L").resize((32, 32)).convert("RGB"))
    return images, d.target.astype(int)


def other_images(n: int, seed: int) -> list[Image.Image]:
    """``n`` random 96-pixel crops of scikit-image's sample photos, resized to 32x32."""
    import skimage.data as skd

    names = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page")
    names += ("clock", "brick", "grass", "immunohistochemistry", "text", "cat")
    photos = []
    for name in names:
        try:
            photos.append(Image.fromarray(getattr(skd, name)()).convert("RGB"))
        except Exception:  # noqa: BLE001 - a sample missing from this scikit-image
            continue
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        w, h = p.size
        side = min(96, w, h)
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append(p.crop((x, y, x + side, y + side)).resize((32, 32), Image.Resampling.BOX))
    return out


def train_package(images, y, directory: Path, epochs: int, seed: int) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(seed)
    cfg = get_backbone_cfg("compact_cnn")
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    x = torch.from_numpy(preprocess(images, spec))
    t = torch.from_numpy(y)
    model = create_model("compact_cnn", num_classes=10, pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), t[idx])
            loss.backward()
            opt.step()
    model.eval()
    return save_package(
        directory,
        model,
        labels=[str(i) for i in range(10)],
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


def featurize(pkg, images):
    from autovision.data.quality import analyze
    from autovision.models.preprocess import preprocess
    from autovision.monitoring.drift import Sample, stats_matrix

    probs, embs = [], []
    for i in range(0, len(images), 128):
        p, e = pkg.predict_with_embeddings(preprocess(images[i : i + 128], pkg.preprocessing))
        probs.append(p)
        embs.append(e)
    emb = None if any(e is None for e in embs) else np.concatenate(embs)
    return Sample(np.concatenate(probs), emb, stats_matrix([analyze(im) for im in images]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from autovision.models.package import ModelPackage
    from autovision.monitoring.drift import detect

    t0 = time.perf_counter()
    images, y = digits_images()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(images))
    train, ref_idx, held = order[:800], order[800:1200], order[1200:]
    with tempfile.TemporaryDirectory() as tmp:
        say(f"training the compact CNN on {len(train)} digits ({args.epochs} epochs)")
        path = train_package([images[i] for i in train], y[train], Path(tmp) / "m", args.epochs, 0)
        pkg = ModelPackage.load(path)
        t_train = time.perf_counter() - t0
        say("featurizing: reference, held out, darkened, other dataset")
        reference = featurize(pkg, [images[i] for i in ref_idx])
        accuracy = float((reference.probs.argmax(1) == y[ref_idx]).mean())
        held_imgs = [images[i] for i in held]
        pools = {
            CONDITIONS[0]: featurize(pkg, held_imgs),
            CONDITIONS[1]: featurize(
                pkg, [ImageEnhance.Brightness(im).enhance(0.7) for im in held_imgs]
            ),
            CONDITIONS[2]: featurize(
                pkg, [im.filter(ImageFilter.GaussianBlur(2)) for im in held_imgs]
            ),
            CONDITIONS[3]: featurize(pkg, other_images(600, args.seed)),
        }
        # label shift: held-out digits of one class, drawn with replacement (about 60 of each)
        one_class = np.flatnonzero(y[held] == 3)
    t_feat = time.perf_counter() - t0 - t_train
    say(f"model accuracy on the reference split: {accuracy:.3f}")

    labels = [str(i) for i in range(10)]
    rows = []
    for cond in CONDITIONS:
        for n in SIZES:
            hits, families = 0, {}
            seconds = []
            for r in range(args.repeats):
                draw = np.random.default_rng(1000 * n + r)
                if cond == CONDITIONS[4]:
                    pool = pools[CONDITIONS[0]]
                    idx = draw.choice(one_class, n, replace=True)
                else:
                    pool = pools[cond]
                    idx = draw.choice(len(pool), n, replace=n > len(pool))
                ts = time.perf_counter()
                res = detect(reference, pool.subset(idx), alpha=args.alpha, labels=labels, seed=r)
                seconds.append(time.perf_counter() - ts)
                hits += res.verdict == "drift"
                for fam in {t["family"] for t in res.tests if t["verdict"] == "drift"}:
                    families[fam] = families.get(fam, 0) + 1
            rows.append(
                {
                    "shift": cond,
                    "n": n,
                    "rate": hits / args.repeats,
                    "by_family": {k: v / args.repeats for k, v in sorted(families.items())},
                    "detect_ms": round(1000 * float(np.median(seconds)), 1),
                }
            )
            say(f"{cond:24s} n={n:3d}: {hits}/{args.repeats}")

    fam_names = ("label", "softmax", "confidence", "embedding", "input")
    head = f"| shift | n | {'drift rate':>10s} | " + " | ".join(fam_names) + " | detect ms |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for row in rows:
        fams = " | ".join(f"{row['by_family'].get(f, 0.0):.2f}" for f in fam_names)
        print(f"| {row['shift']} | {row['n']} | {row['rate']:.2f} | {fams} | {row['detect_ms']} |")
    false_alarm = max(r["rate"] for r in rows if r["shift"] == CONDITIONS[0])
    total = time.perf_counter() - t0
    print(f"\nworst false-alarm rate: {false_alarm:.2f} (must be <= 0.05); ", end="")
    print(f"model accuracy {accuracy:.3f}; total {total:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "drift",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "repeats": args.repeats,
        "alpha": args.alpha,
        "reference_images": len(ref_idx),
        "held_out_images": len(held),
        "model_accuracy": accuracy,
        "train_s": round(t_train, 1),
        "featurize_s": round(t_feat, 1),
        "worst_false_alarm_rate": false_alarm,
        "rows": rows,
    }
    (RESULTS / "bench_drift.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
