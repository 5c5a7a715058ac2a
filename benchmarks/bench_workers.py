"""Trial workers: trials per hour with 1 and 2 workers, per-trial overhead, worker start.

    .venv/bin/python benchmarks/bench_workers.py                 # 12 trials per run, + PG
    .venv/bin/python benchmarks/bench_workers.py --trials 8 --no-pg

- The same search (a compact CNN at 16 px, 6-8 epochs, on 2 x 80 generated training images)
  with ``train(..., trials=N, workers=W)`` for W = 1 and 2, each worker one thread
  (``AUTOVISION_THREADS=1``), in the same run, one after the other, each on a fresh
  workspace. Trials per hour: trained trials (completed or pruned) over the exploration's
  wall time (first trial start to last trial end in the study); epochs per hour too, since
  pruning makes trials unequal.
- Worker start: from the process spawn to its "ready" mark in the study (interpreter, imports,
  data, study), and the coordinator's time to the first ask.
- Core check, before and after: a CPU-bound Python loop alone, then two at once (each slower
  by 1.0x when the machine gives two processes two cores, 2.0x when they share one).
- Coordinator: the CPU share of one core the ``train`` process uses while it supervises.
- ask/tell: mean latencies the workers measured on the workspace's SQLite during the runs, and
  a synthetic loop (ask, 3 suggests, 2 user attributes, tell; TPE as the search uses it, with
  the workers' heartbeat storage) on SQLite and on a throwaway PostgreSQL (Debian's
  ``postgresql`` binaries run as ``nobody`` on 127.0.0.1), unless ``--no-pg``.

Results go to ``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [6, 8],
    "batch_size": 16,
}


def _say(msg: str) -> None:
    print(f"[bench-workers] {msg}", flush=True)


def _workspace(root: Path) -> Any:
    import numpy as np
    from PIL import Image

    from autovision.data.dataset import Item
    from autovision.workspace import Workspace

    ws = Workspace(root)
    labels, counts = ("a", "b"), (80, 10, 0)
    first = ws.reserve_item_ids("tiny", len(labels) * sum(counts))
    items, k = [], 0
    rng = np.random.default_rng(0)
    for li, lab in enumerate(labels):
        for split, n in zip(("train", "validation", "test"), counts, strict=True):
            for i in range(n):
                base = np.array([(220, 40, 40), (40, 200, 60)][li], dtype=np.float32)
                yy, xx = np.mgrid[0:16, 0:16]
                img = base * (0.6 + 0.4 * (((xx + yy * li) // (4 + 2 * li)) % 2))[..., None]
                img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="PNG")
                items.append(
                    Item(
                        id=first + k,
                        sha256=ws.blobs.put(buf.getvalue()),
                        source=f"{lab}/{split}-{i:03d}.png",
                        labels=(lab,),
                        split=split,
                        width=16,
                        height=16,
                        format="PNG",
                    )
                )
                k += 1
    ws.create_version("tiny", items, multi_label=False, source="generated")
    return ws


def run_search(root: Path, workers: int, trials: int) -> dict[str, Any]:
    import optuna

    from autovision.search import train
    from autovision.search import workers as pool

    ws = _workspace(root)
    captured: dict[str, Any] = {}
    original = pool.coordinate

    def coordinate(search: Any, study: Any, **kw: Any) -> str:
        cpu, wall = time.process_time(), time.time()
        out = original(search, study, **kw)
        captured["coordinator_cpu"] = (time.process_time() - cpu) / (time.time() - wall)
        captured["reports"] = search.reports
        return out

    pool.coordinate = coordinate
    t0 = time.time()
    try:
        result = train(ws, "tiny", trials=trials, workers=workers, seed=1)
    finally:
        pool.coordinate = original
    total = time.time() - t0
    study = optuna.load_study(study_name=f"autovision-{result.run_id}", storage=ws.db_url)
    explore = [t for t in study.trials if t.user_attrs.get("worker") and t.datetime_complete]
    trained = [t for t in explore if t.user_attrs.get("trained")]
    start = min(t.datetime_start for t in explore).timestamp()
    end = max(t.datetime_complete for t in explore).timestamp()
    window = end - start
    epochs = sum(int(t.user_attrs.get("epochs_run", 0)) for t in trained)
    attrs = study.user_attrs
    reports = captured["reports"]
    ready = [
        attrs[pool.READY_PREFIX + r["worker"]]["time"] - r["spawned"]
        for r in reports
        if pool.READY_PREFIX + r["worker"] in attrs
    ]
    asks = [r["ask_s"] for r in reports if r.get("ask_s") is not None]
    tells = [r["tell_s"] for r in reports if r.get("tell_s") is not None]
    return {
        "workers": workers,
        "threads_per_worker": pool.threads_per_worker(workers),
        "trials_trained": len(trained),
        "states": {
            s: sum(t.state.name == s for t in trained) for s in ("COMPLETE", "PRUNED", "FAIL")
        },
        "per_worker": {
            r["worker"]: sum(t.user_attrs["worker"] == r["worker"] for t in trained)
            for r in reports
        },
        "explore_s": round(window, 2),
        "trial_s_mean": round(mean(float(t.user_attrs.get("seconds", 0)) for t in trained), 2),
        "trials_per_hour": round(len(trained) / window * 3600, 1),
        "epochs_per_hour": round(epochs / window * 3600, 1),
        "worker_ready_s": round(mean(ready), 2) if ready else None,
        "first_ask_after_start_s": round(start - t0, 2),
        "coordinator_cpu_share": round(captured["coordinator_cpu"], 3),  # of one core
        "ask_ms": round(1000 * mean(asks), 2) if asks else None,
        "tell_ms": round(1000 * mean(tells), 2) if tells else None,
        "total_s": round(total, 2),
        "stop_reason": result.stop_reason,
    }


def ask_tell(url: str, n: int) -> dict[str, float]:
    """Median ms of ask, the suggests and tell over ``n`` trials on ``url``'s storage."""
    import optuna

    from autovision.search import study as studies

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"bench-{os.getpid()}-{time.time_ns()}"
    study = studies.open_study(url, name, seed=0, heartbeat=(10, 30))
    ask, suggest, tell = [], [], []
    for i in range(n):
        t = time.perf_counter()
        trial = study.ask()
        t1 = time.perf_counter()
        x = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("epochs", 2, 8)
        trial.suggest_categorical("mode", ["scratch", "linear"])
        trial.set_user_attr("worker", "bench")
        trial.set_user_attr("config", {"i": i})
        t2 = time.perf_counter()
        study.tell(trial, -abs(x - 0.01))
        t3 = time.perf_counter()
        ask.append(t1 - t)
        suggest.append(t2 - t1)
        tell.append(t3 - t2)
    return {
        "trials": n,
        "ask_ms": round(1000 * median(ask), 2),
        "suggest_and_attrs_ms": round(1000 * median(suggest), 2),
        "tell_ms": round(1000 * median(tell), 2),
    }


SPIN = (
    "import time\nt = time.time()\nx = 0\nfor i in range(15_000_000):\n    x += i\n"
    "print(time.time() - t)"
)


def core_check() -> dict[str, float]:
    """Wall seconds of a CPU-bound Python loop alone and with two at once: whether the
    machine gives two processes two cores right now (1.0: yes, 2.0: they share one)."""

    def spin(n: int) -> list[float]:
        procs = [
            subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE) for _ in range(n)
        ]
        return [float(p.communicate()[0]) for p in procs]

    alone = spin(1)[0]
    both = mean(spin(2))
    return {
        "alone_s": round(alone, 2),
        "two_at_once_s": round(both, 2),
        "ratio": round(both / alone, 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throwaway PostgreSQL server (``initdb``/``pg_ctl`` refuse root: run as nobody)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.port = _free_port()
        self.bin = next(Path("/usr/lib/postgresql").glob("*/bin"), None)

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, cwd="/tmp")

    def __enter__(self) -> str:
        if self.bin is None:
            raise RuntimeError("no /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
        data = str(self.dir / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "postgres")
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.dir}"
        log = str(self.dir / "log")
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", opts, "-l", log, "-w", "start")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def __exit__(self, *exc: Any) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _table(runs: list[dict[str, Any]], latency: dict[str, Any]) -> str:
    lines = [
        "| workers (1 thread each) | trials trained | explore s | s/trial | trials/h | epochs/h "
        "| worker ready s | ask ms | tell ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['workers']} | {r['trials_trained']} | {r['explore_s']} | {r['trial_s_mean']} | "
            f"{r['trials_per_hour']} | {r['epochs_per_hour']} | {r['worker_ready_s']} | "
            f"{r['ask_ms']} | {r['tell_ms']} |"
        )
    lines += ["", "| storage | ask ms | suggests + attrs ms | tell ms |", "|---|---:|---:|---:|"]
    for name, v in latency.items():
        if "error" in v:
            lines.append(f"| {name} | {v['error']} | | |")
        else:
            lines.append(
                f"| {name} | {v['ask_ms']} | {v['suggest_and_attrs_ms']} | {v['tell_ms']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12, help="trials per search")
    ap.add_argument("--latency-trials", type=int, default=100)
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL latency")
    args = ap.parse_args(argv)
    os.environ["AUTOVISION_SEARCH_SPACE"] = json.dumps(SPACE)
    os.environ["AUTOVISION_THREADS"] = "1"
    for var in ("AUTOVISION_DB_URL", "AUTOVISION_BLOB_URL", "AUTOVISION_WORKSPACE"):
        os.environ.pop(var, None)
    load = os.getloadavg()
    cores_before = core_check()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for n in (1, 2):
            _say(f"search with {n} worker(s), {args.trials} trials...")
            runs.append(run_search(Path(tmp) / f"ws{n}", n, args.trials))
            _say(json.dumps(runs[-1]))
        latency: dict[str, Any] = {}
        sqlite = f"sqlite:///{Path(tmp) / 'latency.db'}"
        from autovision.workspace import Workspace

        Workspace(Path(tmp) / "lat", db_url=sqlite)  # the workspace schema, WAL
        latency["SQLite (workspace file, WAL)"] = ask_tell(sqlite, args.latency_trials)
        if not args.no_pg:
            try:
                with Postgres() as url:
                    latency["PostgreSQL 127.0.0.1"] = ask_tell(url, args.latency_trials)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                latency["PostgreSQL 127.0.0.1"] = {"error": f"not measured: {exc}"}
    cores_after = core_check()
    speedup = runs[1]["trials_per_hour"] / runs[0]["trials_per_hour"]
    out = {
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in load],
        "core_check": {"before": cores_before, "after": cores_after},
        "space": SPACE,
        "runs": runs,
        "speedup_2_workers": round(speedup, 2),
        "ask_tell": latency,
        "python": sys.version.split()[0],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "workers.json").write_text(json.dumps(out, indent=2))
    print(_table(runs, latency))
    print(f"\n2 workers / 1 worker, trials per hour: {speedup:.2f}x (load average {load[0]:.1f})")
    print(
        "two CPU-bound processes at once, each slower than one alone by "
        f"{cores_before['ratio']}x before and {cores_after['ratio']}x after (1.0: two free cores)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
