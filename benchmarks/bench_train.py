"""Training benchmark: the budgeted search on real data sets, judged on their test splits.

    .venv/bin/python benchmarks/bench_train.py                   # all three
    .venv/bin/python benchmarks/bench_train.py digits            # one (digits, fashion_mnist,
                                                                 # openclipart)
    .venv/bin/python benchmarks/bench_train.py digits --budget 1m   # a shorter smoke run

- ``digits``: scikit-learn's digits as PNGs, split 80/10/10 by the importer, ``--budget 5m``;
  target: test accuracy >= 0.985.
- ``fashion_mnist``: the official 60,000 training images (54,000 train + 6,000 validation)
  and the official 10,000 test images, ``--budget 30m``; target: test accuracy >= 0.93
  (published anchors: best scikit-learn classifier 0.897, small CNNs 0.916 to 0.932).
- ``openclipart``: seven openclipart-png categories, 80/10/10, ``--budget 20m``; target: beat,
  in the same run, frozen EfficientNet-Lite0 embeddings + logistic regression by >= 5 points.

Data is fetched and converted by ``benchmarks/datasets.py`` (cached in ``.cache/bench/``) and
imported as a user would (``autovision.data.importer.import_dataset``); the import and the
baseline are not part of the training budget. Test accuracy comes from
``autovision.evaluation`` (or the model package directly when that is missing). Results go
to ``benchmarks/results/train-<name>.json``; the exit code is non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402  (benchmarks/datasets.py: cached sample data)

RESULTS = HERE / "results"


@dataclass(frozen=True)
class Bench:
    name: str
    budget: str
    source: Callable[[], Path]
    split: tuple[float, float, float] | None  # None: the file says
    target: float | None  # absolute test accuracy to reach
    margin: float | None  # points above the baseline to reach
    baseline_note: str


BENCHES = {
    "digits": Bench(
        "digits", "5m", datasets.digits_folder, (0.8, 0.1, 0.1), 0.985, None, "target 0.985"
    ),
    "fashion_mnist": Bench(
        "fashion_mnist",
        "30m",
        lambda: datasets.fashion_mnist_csv(validation=True),
        None,
        0.93,
        None,
        "target 0.93 (sklearn best 0.897)",
    ),
    "openclipart": Bench(
        "openclipart",
        "20m",
        datasets.openclipart_folder,
        (0.8, 0.1, 0.1),
        None,
        0.05,
        "Lite0 embeddings + logistic regression",
    ),
}


def _say(msg: str) -> None:
    print(f"[bench-train] {msg}", flush=True)


def test_accuracy(ws: Any, model_id: str) -> float:
    try:
        from autovision.evaluation.api import evaluate
    except ImportError:
        evaluate = None
    if evaluate is not None:
        return float(evaluate(ws, model_id, split="test")["accuracy"])
    from autovision.models.package import ModelPackage

    info = ws.model(model_id)
    pkg = ModelPackage.load(info["path"])
    ds = ws.dataset(f"{info['dataset']}@{info['dataset_version']}")
    items = ds.split("test")
    correct = 0
    for i in range(0, len(items), 256):
        chunk = items[i : i + 256]
        probs = pkg.predict_proba([ws.load_image(it) for it in chunk])
        correct += sum(
            pkg.labels[j] == it.label for j, it in zip(probs.argmax(1), chunk, strict=True)
        )
    return correct / max(1, len(items))


def lite0_logistic_baseline(ws: Any, ref: str) -> float:
    """Frozen EfficientNet-Lite0 (224 px) embeddings + scikit-learn logistic regression,
    fitted on train + validation, scored on test."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.models.registry import create_model, embed, get_backbone_cfg

    cfg = get_backbone_cfg("efficientnet_lite0")
    spec = Preprocessing(224, cfg.mean, cfg.std)
    model = create_model("efficientnet_lite0", num_classes=0).eval()
    ds = ws.dataset(ref)

    def features(items: list) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(items), 32):
                x = preprocess([ws.load_image(it) for it in items[i : i + 32]], spec)
                out.append(embed(model, torch.from_numpy(x)).numpy())
        return np.concatenate(out)

    fit_items = ds.split("train") + ds.split("validation")
    test_items = ds.split("test")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(features(fit_items), [it.label for it in fit_items])
    pred = clf.predict(features(test_items))
    return float(np.mean([p == it.label for p, it in zip(pred, test_items, strict=True)]))


def run(bench: Bench, budget: str | None, workdir: Path) -> dict[str, Any]:
    from autovision.data.importer import import_dataset
    from autovision.search import train
    from autovision.search.budget import parse_duration
    from autovision.workspace import Workspace

    budget = budget or bench.budget
    source = bench.source()
    ws = Workspace(workdir / bench.name)
    t = time.perf_counter()
    kwargs = {"split": bench.split} if bench.split else {}
    imported = import_dataset(ws, bench.name, source, **kwargs).to_dict()
    _say(f"{bench.name}: imported {imported['images']} images in {time.perf_counter() - t:.0f} s")
    ref = f"{bench.name}@{imported['version']}"
    baseline = None
    if bench.margin is not None:
        t = time.perf_counter()
        baseline = lite0_logistic_baseline(ws, ref)
        _say(f"{bench.name}: baseline {baseline:.4f} ({time.perf_counter() - t:.0f} s)")

    last = [0.0]

    def progress(e: dict[str, Any]) -> None:
        if e["event"] == "trial_end" and e.get("state") != "SKIPPED":
            _say(
                f"trial {e['trial']} {e.get('state')} score={e.get('score')} best={e.get('best')} "
                f"elapsed={e['elapsed']:.0f}s"
            )
        elif e["event"] == "epoch" and e["elapsed"] - last[0] > 60:
            last[0] = e["elapsed"]
            _say(f"  trial {e['trial']} epoch {e['epoch']}/{e['epochs']} val={e['score']:.4f}")

    t = time.perf_counter()
    result = train(ws, ref, budget=budget, progress=progress)
    wall = time.perf_counter() - t
    acc = test_accuracy(ws, result.model)
    target = bench.target if bench.target is not None else (baseline or 0) + (bench.margin or 0)
    budget_s = parse_duration(budget)
    return {
        "dataset": bench.name,
        "budget": budget,
        "budget_seconds": budget_s,
        "accuracy": round(acc, 4),
        "baseline": None if baseline is None else round(baseline, 4),
        "baseline_note": bench.baseline_note,
        "target": round(target, 4),
        "seconds_used": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "within_budget": result.seconds <= 1.1 * budget_s,
        "passed": acc >= target and result.seconds <= 1.1 * budget_s,
        "train": result.to_dict(),
        "images": imported["images"],
        "splits": imported.get("splits"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'dataset':<14} {'budget':>7} {'accuracy':>9} {'baseline':>9} {'target':>7} "
        f"{'seconds used':>13}  ok"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        base = "-" if r["baseline"] is None else f"{r['baseline']:.4f}"
        print(
            f"{r['dataset']:<14} {r['budget']:>7} {r['accuracy']:>9.4f} {base:>9} "
            f"{r['target']:>7.4f} {r['seconds_used']:>13.1f}  {'yes' if r['passed'] else 'NO'}"
        )
        print(f"{'':<14} best: {r['train']['best']}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("names", nargs="*", help=f"sub-benchmarks: {', '.join(BENCHES)} (default all)")
    ap.add_argument("--budget", help="override every sub-benchmark's budget (smoke runs)")
    ap.add_argument("--workdir", type=Path, help="workspace parent (default: a temporary folder)")
    args = ap.parse_args(argv)
    names = args.names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown sub-benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        workdir = args.workdir or Path(tmp)
        for name in names:
            row = run(BENCHES[name], args.budget, workdir)
            rows.append(row)
            suffix = "" if args.budget is None else "-smoke"
            (RESULTS / f"train-{name}{suffix}.json").write_text(json.dumps(row, indent=2) + "\n")
    print_table(rows)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
