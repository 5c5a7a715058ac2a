"""A longer fuzz run of the prediction server: the strategies of the fuzz tests
(``tests/serving/fuzzing.py``: every route from the app's OpenAPI schema, mutated images on
each predict route, fuzzed v2 ``pixels``) with fresh random examples, round after round,
for ``--minutes``. The app runs in-process (a tiny compact-CNN package, an admin key sent
with every request); each request has a timeout; /healthz is checked after every round.

    .venv/bin/python benchmarks/bench_fuzz.py [--minutes 1] [--examples 50]

Prints requests by route and status, and every bad answer (5xx, timeout, leaked path or
stack trace, error body not in the route's JSON form); writes ``benchmarks/results/fuzz.json``.
The exit code is 1 when any bad answer was seen.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import example, given

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "serving"))
import fuzzing as F  # noqa: E402
from bench_batch_predict import machine, say, write_results  # noqa: E402


def targets(app: Any, session: Any, headers: dict[str, str], tally: F.Tally, root: str):
    """``(name, run(examples))`` for every route operation, image route and pixels."""
    markers = (root,)
    out = []
    for operation in F.operations(F.fuzz_schema(app)):

        def run_op(n: int, operation: Any = operation) -> None:
            @F.fuzz_settings(n)
            @given(F.case_strategy(operation))
            def run(case: Any) -> None:
                F.call_case(case, session, headers, tally, markers)

            run()

        out.append((f"{operation.method.upper()} {operation.path}", run_op))
    seeds = F.seed_images()
    for route in F.IMAGE_ROUTES:

        def run_images(n: int, route: str = route) -> None:
            @F.fuzz_settings(n)
            @given(F.mutated_image(seeds))
            def run(case: tuple[str, bytes]) -> None:
                F.check_image_case(tally, session, route, case, markers)

            run()

        out.append((f"images {route}", run_images))

    def run_pixels(n: int) -> None:
        @F.fuzz_settings(n)
        @given(F.pixels_request())
        @example(F.ISSUE11_PIXELS)
        @example(F.ISSUE11_PIXELS_WRAP)
        def run(case: tuple[str, dict, bytes | None]) -> None:
            F.check_pixels_case(tally, session, case, markers)

        run()

    out.append(("v2 pixels", run_pixels))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--examples", type=int, default=50, help="examples per target and round")
    args = parser.parse_args()

    from autovision.security import create_key
    from autovision.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    ws = Workspace(tmp / "ws")
    package = F.build_package(tmp)
    ws.register_model(F.MODEL, dataset="toy", dataset_version=1, task="single-label", path=package)
    _, key = create_key(ws, "admin")
    headers = {"Authorization": f"Bearer {key}"}
    app = F.build_app(ws)
    session = F.asgi_session(app)
    session.headers.update(headers)
    tally = F.Tally()
    todo = targets(app, session, headers, tally, str(ws.root))
    say(f"{len(todo)} targets, {args.examples} examples each per round, {args.minutes} min")
    deadline = time.monotonic() + 60 * args.minutes
    start = time.monotonic()
    rounds, not_alive = 0, 0
    while time.monotonic() < deadline:
        for name, run in todo:
            if time.monotonic() >= deadline:
                break
            run(args.examples)
            if not F.alive(session):
                not_alive += 1
                tally.failures.append(F.Failure("server not alive after", name, None, ""))
        rounds += 1
        say(
            f"round {rounds}: {sum(tally.statuses.values())} requests, "
            f"{len(tally.failures)} bad answers"
        )
    seconds = time.monotonic() - start
    F.stop_app(app)

    print(tally.table())
    total = sum(tally.statuses.values())
    bad = len(tally.failures)
    print(f"\n{total} requests in {seconds:.0f} s ({rounds} rounds); bad answers: {bad}")
    for failure in tally.failures[:50]:
        print(failure)
    by_status: dict[str, int] = {}
    for (_, status), n in tally.statuses.items():
        by_status[status] = by_status.get(status, 0) + n
    path = write_results(
        "fuzz",
        {
            "minutes": args.minutes,
            "examples_per_round": args.examples,
            "rounds": rounds,
            "seconds": seconds,
            "requests": total,
            "by_status": by_status,
            "by_route": [
                {"route": r, "status": s, "requests": n}
                for (r, s), n in sorted(tally.statuses.items())
            ],
            "bad_answers": [vars(f) for f in tally.failures],
            "not_alive_after_round": not_alive,
            "machine": machine(),
        },
    )
    print(f"results: {path}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
