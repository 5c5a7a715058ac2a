"""The workspace database on SQLite and on PostgreSQL: per-call latency of the search's Optuna
ask/report/tell (RDBStorage, the study of ``search/study.py``: seeded multivariate TPE, the
warm successive-halving pruner, ``suggest`` drawing the default search space; the same asks
with a random sampler show the storage's share) and of a few
workspace operations (open, register_model, list_models, create and load a 2,000-item
dataset version).

    .venv/bin/python benchmarks/bench_db.py [--trials 40] [--pg-url postgresql+psycopg://...]

Without ``--pg-url`` a throwaway PostgreSQL server is started (``tests/_postgres.py``: Debian's
``postgresql``, on 127.0.0.1, fsync off like the tests') and stopped at the end; with it, a
fresh database is made on that server. SQLite is a file in a temporary workspace (WAL, what a
workspace uses). Prints the table and writes ``benchmarks/results/bench_db.json``.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
EPOCHS_REPORTED = 3  # intermediate values per trial (one per epoch), each with should_prune
ITEMS = 2000


def _postgres_module():
    """``tests/_postgres.py`` by path (not ``import tests._postgres``: the venv may hold
    another package named ``tests``)."""
    spec = importlib.util.spec_from_file_location(
        "_bench_postgres", REPO / "tests" / "_postgres.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p95_ms": p95,
        "mean_ms": statistics.fmean(ms),
    }


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_optuna(db_url: str, trials: int) -> dict[str, dict[str, float]]:
    import optuna

    from autovision.search.prepare import DataProfile
    from autovision.search.space import SearchSpace, suggest
    from autovision.search.study import open_study

    space = SearchSpace()
    profile = DataProfile(
        n_train=800, n_val=200, n_labels=5, median_side=224, grayscale=False, imbalance=1.5
    )
    times: dict[str, list[float]] = {
        "open study": [],
        "ask + suggest": [],
        "report": [],
        "tell": [],
    }
    warm = open_study(db_url, "warm-up", seed=0)  # imports and first queries: not timed
    first = warm.ask()
    suggest(first, space, profile, multi_label=False, gpu=False)
    warm.tell(first, 0.5)
    times["open study"].append(_timed(lambda: open_study(db_url, "bench", seed=0)))
    study = open_study(db_url, "bench", seed=0)
    for n in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        suggest(trial, space, profile, multi_label=False, gpu=False)
        trial.set_user_attr("trained", True)  # what the search records per trial
        times["ask + suggest"].append(time.perf_counter() - t0)
        score = 0.5 + 0.4 * ((n * 7919) % 97) / 97
        for epoch in range(1, EPOCHS_REPORTED + 1):
            t0 = time.perf_counter()
            trial.report(score * epoch / EPOCHS_REPORTED, epoch)
            trial.should_prune()
            times["report"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        study.tell(trial, score)
        times["tell"].append(time.perf_counter() - t0)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == trials
    # The same calls with a random sampler: what the storage costs without TPE's modelling.
    plain = optuna.create_study(
        study_name="random",
        storage=optuna.storages.RDBStorage(db_url),
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
    )
    key = "ask + suggest, random sampler"
    times[key] = []
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = plain.ask()
        suggest(trial, space, profile, multi_label=False, gpu=False)
        trial.set_user_attr("trained", True)
        times[key].append(time.perf_counter() - t0)
        plain.tell(trial, 0.5)
    for _ in range(4):
        times["open study"].append(_timed(lambda: open_study(db_url, "bench", seed=0)))
    return {k: _stats(v) for k, v in times.items()}


def bench_workspace(root: Path, db_url: str | None, models: int) -> dict[str, dict[str, float]]:
    from autovision.data.dataset import Item
    from autovision.workspace import Workspace

    def open_ws() -> Workspace:
        return Workspace(root, db_url=db_url)

    ws = open_ws()
    times: dict[str, list[float]] = {
        "open workspace": [],
        "register_model": [],
        "list_models (N models)": [],
        f"create_version ({ITEMS:,} items)": [],
        f"dataset load ({ITEMS:,} items)": [],
    }
    for _ in range(5):
        t0 = time.perf_counter()
        other = open_ws()
        times["open workspace"].append(time.perf_counter() - t0)
        other.engine.dispose()
    for i in range(models):
        path = ws.models_dir / f"m-{i:04d}"
        path.mkdir(parents=True, exist_ok=True)
        times["register_model"].append(
            _timed(
                lambda i=i, path=path: ws.register_model(
                    f"m-{i:04d}",
                    dataset="pets",
                    dataset_version=1,
                    task="single-label",
                    path=path,
                    score=0.5 + i / (2 * models),
                    info={"validation": {"accuracy": 0.9}},
                )
            )
        )
    for _ in range(10):
        times["list_models (N models)"].append(_timed(ws.list_models))
    labels = ("cat", "dog", "bird", "fish", "frog")
    items = [
        Item(
            id=i,
            sha256=f"{i:064x}",
            source=f"{labels[i % 5]}/{i:05d}.jpg",
            labels=(labels[i % 5],),
            split=("train", "train", "train", "validation", "test")[i % 5],
            width=640,
            height=480,
            format="JPEG",
            phash=f"{i:016x}",
            metadata={"origin": "bench"},
            stats={"brightness": 0.5, "contrast": 0.2, "blur": 100.0},
        )
        for i in range(1, ITEMS + 1)
    ]
    for _ in range(3):
        times[f"create_version ({ITEMS:,} items)"].append(
            _timed(lambda: ws.create_version("pets", items, multi_label=False))
        )
    for _ in range(10):
        times[f"dataset load ({ITEMS:,} items)"].append(_timed(lambda: ws.dataset("pets@1")))
    ws.engine.dispose()
    return {k: _stats(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=40, help="trials asked and told per backend")
    ap.add_argument("--models", type=int, default=50, help="models registered per backend")
    ap.add_argument("--pg-url", help="an existing PostgreSQL server (a fresh database is made)")
    args = ap.parse_args()

    server, pg_url, pg_where = None, None, "throwaway (tests/_postgres.py, fsync off)"
    if args.pg_url:
        import sqlalchemy as sa

        name = f"autovision_bench_{int(time.time())}"
        admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        pg_url = args.pg_url.rsplit("/", 1)[0] + f"/{name}"
        pg_where = "given server"
    else:
        pg = _postgres_module()
        reason = pg.missing_reason()
        if reason:
            raise SystemExit(reason)
        server = pg.server()
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in ("sqlite", "postgresql"):
                root = Path(tmp) / backend
                url = None
                if backend == "postgresql":
                    url = pg_url or server.create_database()
                ws_part = bench_workspace(root, url, args.models)
                from autovision.workspace import Workspace

                db_url = Workspace(root, db_url=url).db_url
                results[backend] = {
                    "optuna": bench_optuna(db_url, args.trials),
                    "workspace": ws_part,
                }
    finally:
        if server is not None:
            from importlib import import_module

            import_module("_bench_postgres").stop()

    rows = [("optuna", k) for k in results["sqlite"]["optuna"]] + [
        ("workspace", k) for k in results["sqlite"]["workspace"]
    ]
    print(f"\nper-call latency, median (p95) ms; {args.trials} trials, {args.models} models")
    print(f"{'operation':<34} {'SQLite':>18} {'PostgreSQL':>18}")
    for part, key in rows:
        cells = []
        for backend in ("sqlite", "postgresql"):
            s = results[backend][part][key]
            cells.append(f"{s['median_ms']:8.2f} ({s['p95_ms']:7.2f})")
        label = key.replace("N models", f"{args.models} models")
        print(f"{label:<34} {cells[0]:>18} {cells[1]:>18}")
    out = {
        "benchmark": "bench_db",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "load_average_at_end": os.getloadavg(),
        "trials": args.trials,
        "models": args.models,
        "items": ITEMS,
        "postgresql": pg_where,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_db.json").write_text(json.dumps(out, indent=2))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"wrote {RESULTS / 'bench_db.json'}")


if __name__ == "__main__":
    main()
