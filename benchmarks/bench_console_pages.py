"""Server time of the console's dataset version page and its gallery fragments on a
50,000-image version, through the whole app (routing, session, template, headers):

    .venv/bin/python benchmarks/bench_console_pages.py [--items 50000] [--repeat 7]

The version is :mod:`bench_console`'s synthetic one (real tiny blobs shared by 50,000
items, 12 labels, 80/10/10). ``first`` is the first request (memos cold), ``median`` the
median of ``--repeat`` later ones, in ms. The page is timed before its issue index exists
(it is then computed in the background: the page must not wait for it) and after. The
exclude action loads the version and writes a new one (the only request that reads every
item); the new version's page then shows the diff. Writes
``benchmarks/results/bench_console_pages.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO / "tests" / "console"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--blobs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    import re

    from _helpers import BASE, PASSWORD, csrf_of, login
    from bench_console import build, say
    from fastapi.testclient import TestClient

    from autovision.console.app import create_app
    from autovision.console.auth import create_user
    from autovision.console.checkjobs import of_app
    from autovision.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench_console_pages_"))
    ws = Workspace(tmp / "ws")
    say(f"building a {args.items}-image version ...")
    ref = build(ws, args.items, args.blobs, tmp)
    name, version = ref.split("@")
    app = create_app(ws)
    create_user(ws, "bench", "trainer", PASSWORD)
    client = TestClient(app, base_url=BASE)
    login(client, "bench")
    rows: list[dict[str, Any]] = []

    def timed(path: str, what: str, repeat: int = args.repeat) -> str:
        times, text = [], ""
        for _ in range(1 + repeat):
            t0 = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (path, response.status_code)
            text = response.text if "thumbs" not in path else ""
        row = {"request": what, "path": path, "first_ms": round(times[0], 1)}
        if repeat:
            row["median_ms"] = round(statistics.median(times[1:]), 1)
        rows.append(row)
        say(f"{what}: {row}")
        return text

    page = f"/datasets/{name}/{version}"
    timed(page, "version page, issues not known yet", repeat=0)
    timed(f"{page}/items/{args.items // 2}", "item detail, issues not known yet", repeat=0)
    t0 = time.perf_counter()
    warmer = of_app(app)[1]
    while not warmer.ready(ref):
        time.sleep(0.1)
    index_s = time.perf_counter() - t0
    say(f"issue index computed in the background: {index_s:.1f} s")
    html = timed(page, "version page")
    next_url = re.findall(r'hx-get="([^"]*after=\d+[^"]*)"', html)[-1].replace("&amp;", "&")
    timed(next_url, "gallery: next page (infinite scroll)")
    timed(f"{page}/gallery?after={int(args.items * 0.9)}", "gallery: page after id 45,000")
    timed(f"{page}/gallery?label=class_03", "gallery: label filter")
    timed(f"{page}/gallery?label=rare", "gallery: rare label (5 images)")
    timed(f"{page}/gallery?split=test&filename=IMG_0001", "gallery: split + filename")
    timed(f"{page}/gallery?issue=exact_duplicates", "gallery: issue filter (all ids)")
    timed(f"{page}/items/{args.items // 2}", "item detail")
    timed(f"/thumbs/{name}/{version}/17", "thumbnail")
    csrf = csrf_of(html)
    t0 = time.perf_counter()
    response = client.post(
        f"{page}/exclude", data={"ids": ["5", "6"], "csrf_token": csrf}, follow_redirects=False
    )
    exclude_ms = (time.perf_counter() - t0) * 1000
    assert response.status_code == 303, response.text
    rows.append({"request": "exclude 2 images (new version)", "first_ms": round(exclude_ms, 1)})
    timed(response.headers["location"], "new version page with its diff")

    table = ["| request | first (ms) | median (ms) |", "|---|---:|---:|"]
    table += [f"| {r['request']} | {r['first_ms']} | {r.get('median_ms', '')} |" for r in rows]
    print("\n".join(table))
    result = {
        "benchmark": "bench_console_pages",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "items": args.items,
        "repeat": args.repeat,
        "issue_index_background_s": round(index_s, 1),
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_console_pages.json").write_text(json.dumps(result, indent=2) + "\n")
    ws.engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
