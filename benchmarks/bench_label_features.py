"""Which frozen features find planted label flips: the label check's model, varied.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_label_features.py            # all features
    PYTHONPATH=src .venv/bin/python benchmarks/bench_label_features.py \\
        --features efficientnet_lite0:224:squash,efficientnet_lite2:260:pad --seeds 0

On the faulty openclipart copy of ``benchmarks/faults.py`` (seed 0; built if missing), every
labelled image (train, validation and test alike; outliers left out of the scoring) gets
out-of-fold probabilities from the label check's own heads (``checks/label_issues``:
``_head`` and ``knn_probs``, 5 stratified folds with each planted copy in its original's fold)
on frozen embeddings of each backbone / input size / resize rule, with and without averaging
the embedding of the mirrored image. Then cleanlab as the check runs it. Per feature set and
fold seed: the out-of-fold accuracy against the true labels; what cleanlab flags (recall,
precision); and the best cut-off of the label-quality ranking: precision at recall 0.8 and
0.7 (the issue's goal is recall >= 0.8 at precision >= 0.7). ``concat`` joins every feature
set (unit length each, mirrored views averaged). The baseline in the same run is the check as
it is (Lite0 224 px, squash, one view). Embeddings are cached in
``.cache/bench/label_features/``; their time is one pass over all images on this machine
(decoding included). Results: ``benchmarks/results/label_features.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402  (benchmarks/datasets.py: cached sample data)
import faults  # noqa: E402  (benchmarks/faults.py: the planted faults)

RESULTS = HERE / "results"
CACHE = datasets.CACHE / "label_features"
FEATURES = (
    "efficientnet_lite0:224:squash",  # the check today (baseline)
    "efficientnet_lite0:224:pad",
    "efficientnet_lite1:240:pad",
    "efficientnet_lite2:260:pad",
)
METHODS = ("lr", "knn", "lr+knn")  # the check averages both


def _faulty() -> Path:
    out = datasets.CACHE / "openclipart-faults-seed0"
    if not (out / "truth.json").exists():
        faults.make_faults(datasets.openclipart_folder(), out, seed=0, limit=None)
    return out


def _embed(root: Path, files: list[str], feature: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(embeddings, embeddings of the mirrored images, seconds for one view)."""
    import torch

    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.models.registry import get_backbone_cfg
    from autovision.search.modes import build_model

    path = CACHE / (feature.replace(":", "_") + ".npz")
    if path.exists():
        d = np.load(path)
        return d["emb"], d["flip"], float(d["seconds"])
    name, size, resize = feature.split(":")
    cfg = get_backbone_cfg(name)
    spec = Preprocessing(int(size), cfg.mean, cfg.std, resize=resize)
    model = build_model(name, ["a", "b"]).eval()
    embs, flips, seconds = [], [], 0.0
    with torch.inference_mode():
        for s in range(0, len(files), 32):
            t0 = time.perf_counter()
            batch = [faults._rgb(root / f) for f in files[s : s + 32]]
            x = torch.from_numpy(preprocess(batch, spec))
            embs.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
            seconds += time.perf_counter() - t0
            m = torch.flip(x, dims=[3])
            flips.append(model.forward_head(model.forward_features(m), pre_logits=True).numpy())
    emb, flip = np.concatenate(embs), np.concatenate(flips)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, emb=emb, flip=flip, seconds=seconds)
    return emb, flip, seconds


def _oof(x: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int, method: str, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    from autovision.checks.label_issues import _head, knn_probs

    p = np.zeros((len(y), k))
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, groups):
        ps = []
        if "lr" in method:
            ps.append(_head(False, len(tr)).fit(x[tr], y[tr]).predict_proba(x[te]))
        if "knn" in method:
            ps.append(knn_probs(x[tr], y[tr], x[te], k))
        p[te] = np.mean(ps, 0)
    return p


def _score(p: np.ndarray, y: np.ndarray, true: np.ndarray, flip: np.ndarray, keep: np.ndarray):
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(y, p, filter_by="prune_by_noise_rate")
    tp, fp = int((flagged & flip).sum()), int((flagged & ~flip & keep).sum())
    order = np.argsort(get_label_quality_scores(y, p))
    hits = np.cumsum(flip[order[keep[order]]])
    out = {
        "oof_accuracy": round(float((p.argmax(1) == true)[keep].mean()), 4),
        "flagged": tp + fp,
        "recall": round(tp / flip.sum(), 3),
        "precision": round(tp / max(1, tp + fp), 3),
    }
    for r in (0.8, 0.7):
        need = int(np.ceil(r * flip.sum()))
        out[f"precision_at_recall_{r}"] = round(need / (int(np.argmax(hits >= need)) + 1), 3)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--features", default=",".join(FEATURES), help="backbone:size:resize,...")
    ap.add_argument("--seeds", default="0,1,2", help="fold seeds")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(int(os.environ.get("AUTOVISION_THREADS", "2")))
    root = _faulty()
    with open(root / "faults.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    truth = json.loads((root / "truth.json").read_text())["files"]
    files, labels = [r[-2] for r in rows], [r[-1] for r in rows]
    classes = sorted(set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    true = np.array([classes.index(truth[f]["true_label"] or truth[f]["label"]) for f in files])
    kind = np.array([truth[f]["kind"] for f in files])
    flip, keep = kind == "label_flip", kind != "outlier"
    groups = np.unique([truth[f].get("original") or f for f in files], return_inverse=True)[1]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    views, seconds = {}, {}
    for feature in args.features.split(","):
        emb, mirrored, sec = _embed(root, files, feature)
        views[feature], views[feature + "+mirror"] = emb, (emb + mirrored) / 2
        seconds[feature], seconds[feature + "+mirror"] = sec, 2 * sec
    if len(seconds) > 2:
        names = [f for f in views if f.endswith("+mirror")]
        views["concat+mirror"] = np.hstack([unit(views[f]) for f in names])
        seconds["concat+mirror"] = sum(seconds[f] for f in names)
    result: list[dict[str, Any]] = []
    for name, x in views.items():
        for method in METHODS if name != "concat+mirror" else ("lr", "lr+knn"):
            per_seed = [
                _score(_oof(x, y, groups, len(classes), method, s), y, true, flip, keep)
                for s in map(int, args.seeds.split(","))
            ]
            row = {"features": name, "method": method, "embed_seconds": round(seconds[name], 1)}
            for key in per_seed[0]:
                row[key] = round(float(np.mean([r[key] for r in per_seed])), 3)
            row["per_seed"] = per_seed
            result.append(row)
            print(
                f"{name:40s} {method:7s} acc {row['oof_accuracy']:.3f} flagged "
                f"{row['flagged']:5.0f} R {row['recall']:.3f} P {row['precision']:.3f} | "
                f"P@R.8 {row['precision_at_recall_0.8']:.3f} "
                f"P@R.7 {row['precision_at_recall_0.7']:.3f} | embed {row['embed_seconds']:.0f} s",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    out = {"flips": int(flip.sum()), "images": len(files), "seeds": args.seeds, "rows": result}
    (RESULTS / "label_features.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
