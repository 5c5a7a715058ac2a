"""Run the benchmarks: every ``benchmarks/bench_*.py``, or the ones named on the command line.

    .venv/bin/python benchmarks/run_all.py            # all of them (what ``make bench`` runs)
    .venv/bin/python benchmarks/run_all.py import     # bench_import.py only

Each benchmark runs as its own process, prints its table and writes JSON into
``benchmarks/results/``. The exit code is non-zero when any benchmark fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Arguments for benchmarks whose own default runs long: the full soak is
# ``benchmarks/bench_soak.py`` without arguments (10 minutes); ``make bench`` runs 1 minute;
# ``bench_shadow.py`` and ``bench_prediction_log.py``: 2 rounds of 20 s loaded phases by
# default, 8 s here.
SHORT_ARGS = {
    "bench_soak": ["--minutes", "1"],
    "bench_shadow": ["--duration", "8", "--sequential", "40"],
    "bench_prediction_log": ["--duration", "8", "--sequential", "40"],
}


def find(names: list[str]) -> list[Path]:
    """``import``, ``bench_import`` or ``bench_import.py`` -> the script; all when none."""
    available = sorted(HERE.glob("bench_*.py"))
    if not names:
        return available
    out = []
    for name in names:
        stem = Path(name).stem
        stem = stem if stem.startswith("bench_") else f"bench_{stem}"
        path = HERE / f"{stem}.py"
        if not path.exists():
            known = ", ".join(p.stem.removeprefix("bench_") for p in available)
            raise SystemExit(f"no benchmark {name!r} (known: {known})")
        out.append(path)
    return out


def main(argv: list[str]) -> int:
    failed = []
    summary = []
    for script in find(argv):
        print(f"=== {script.name}", flush=True)
        start = time.perf_counter()
        args = SHORT_ARGS.get(script.stem, [])
        code = subprocess.call([sys.executable, str(script), *args], cwd=HERE.parent)
        summary.append((script.name, code, time.perf_counter() - start))
        if code != 0:
            failed.append(script.name)
    print("\n=== summary")
    for name, code, seconds in summary:
        print(f"{name:<32} {'ok' if code == 0 else f'FAILED ({code})':<12} {seconds:7.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
