"""Server time of the console's gallery queries on a 50,000-image dataset version, next to
what a naive page costs (load the whole version with ``ws.dataset(ref)``, filter, slice) in
the same run.

    .venv/bin/python benchmarks/bench_console.py [--items 50000] [--blobs 300] [--repeat 7]

The version is synthetic: ``--blobs`` real tiny images imported with the importer (their
phash and quality stats are real), shared by many items with distinct ids and sources,
stored through ``ws.create_version``; 12 labels (one rare, 5 images), splits 80/10/10.
Sharing blobs makes every image an exact duplicate of others: the ``exact_duplicates``
filter then matches all 50,000 ids, a worst case for the issue filter.

Times are in ms: ``first`` is the first call of a fresh process state (counts not yet
memoised), ``median`` the median of ``--repeat`` later calls. Prints a table and writes
``benchmarks/results/bench_console.json``.
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
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LABELS = [f"class_{i:02d}" for i in range(11)] + ["rare"]


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def build(ws: Any, n_items: int, n_blobs: int, tmp: Path) -> str:
    """Import ``n_blobs`` tiny images, then store an ``n_items`` version sharing them."""
    from autovision.data.importer import import_dataset

    rng = np.random.default_rng(0)
    src = tmp / "src" / "x"
    src.mkdir(parents=True)
    for i in range(n_blobs):
        arr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(arr).save(src / f"{i}.png")
    templates = import_dataset(ws, "templates", tmp / "src").version.items
    items = []
    for i in range(n_items):
        t = templates[i % len(templates)]
        label = "rare" if i % 10_000 == 7 else LABELS[i % 11]
        split = "test" if i % 10 == 0 else "validation" if i % 10 == 1 else "train"
        items.append(
            replace(
                t,
                id=i + 1,
                source=f"photos/{label}/IMG_{i:06d}.jpg",
                labels=(label,),
                split=split,
            )
        )
    ws.create_version("big", items, multi_label=False, source="synthetic")
    return "big@1"


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    t0 = time.perf_counter()
    fn()
    first = (time.perf_counter() - t0) * 1000
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "first_ms": round(first, 2),
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
    }


def naive_page(ws: Any, ref: str, *, label=None, split=None, after=0, limit=60):
    """What a page costs without the gallery library: the whole version, then a slice."""
    ds = ws.dataset(ref)
    out = [
        it
        for it in ds.items
        if it.id > after
        and (label is None or label in it.labels)
        and (split is None or it.split == split)
    ]
    return [it.to_dict() for it in out[:limit]], len(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--blobs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from autovision.data import gallery as G
    from autovision.data.edit import exclude, relabel
    from autovision.data.thumbnails import thumbnail
    from autovision.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench_console_"))
    ws = Workspace(tmp / "ws")
    say(f"building a {args.items}-image version from {args.blobs} blobs ...")
    t0 = time.perf_counter()
    ref = build(ws, args.items, args.blobs, tmp)
    build_s = time.perf_counter() - t0
    deep = int(args.items * 0.9)
    rows: list[dict[str, Any]] = []

    def row(name: str, fn: Callable[[], Any], *, naive: bool = False, repeat: int | None = None):
        r = timed(fn, args.repeat if repeat is None else repeat)
        rows.append({"query": name, "kind": "baseline" if naive else "gallery", **r})
        say(f"{name}: first {r['first_ms']} ms, median {r['median_ms']} ms")

    say("baseline: naive pages (whole version loaded) ...")
    row("naive first page", lambda: naive_page(ws, ref), naive=True, repeat=3)
    row(
        f"naive page after id {deep:,}",
        lambda: naive_page(ws, ref, after=deep),
        naive=True,
        repeat=3,
    )
    row("naive label filter", lambda: naive_page(ws, ref, label="rare"), naive=True, repeat=3)

    page = lambda **kw: lambda: G.gallery_page(ws, ref, **kw)  # noqa: E731
    row("first page", page())
    row(f"page after id {deep:,}", page(after=deep))
    row("label filter (1 in 11)", page(label="class_03"))
    row("label filter, page deep in", page(label="class_03", after=deep))
    row("rare label (5 images)", page(label="rare"))
    row("split filter (test)", page(split="test"))
    row("filename filter", page(filename="img_0412"))
    row("label + split + filename", page(label="class_05", split="train", filename="IMG_01"))
    row("hostile filename '%_\\\\'", page(filename="%_\\"))
    # Pages walked one after another, as infinite scroll does.
    cursor: dict[str, Any] = {"after": None}

    def scroll() -> None:
        p = G.gallery_page(ws, ref, after=cursor["after"])
        cursor["after"] = p["next"]

    row("infinite scroll, next page", scroll, repeat=50)

    t0 = time.perf_counter()
    G.issue_index(ws, ref)
    report_s = time.perf_counter() - t0
    say(f"issue index (the data report, once per version content): {report_s:.2f} s")
    G._indexes.clear()
    row("issue index from its JSON cache", lambda: (G._indexes.clear(), G.issue_index(ws, ref)))
    row("issue filter: exact_duplicates (all ids)", page(issue="exact_duplicates"))
    row("issue filter, page deep in", page(issue="exact_duplicates", after=deep))
    row("issue + label filter", page(issue="exact_duplicates", label="class_07"))
    row("issue filter: quality", page(issue="quality"))

    G._distributions.clear()
    row("distribution", lambda: G.distribution(ws, ref))
    G._distributions.clear()
    row(
        "distribution (not memoised)",
        lambda: (G._distributions.clear(), G.distribution(ws, ref)),
    )
    row("item detail", lambda: G.item_detail(ws, ref, deep))

    say("thumbnails ...")
    sha = ws.dataset("templates").items[0].sha256
    t0 = time.perf_counter()
    thumbnail(ws, sha)
    make_ms = (time.perf_counter() - t0) * 1000
    rows.append({"query": "thumbnail, made", "kind": "gallery", "first_ms": round(make_ms, 2)})
    row("thumbnail, cached", lambda: thumbnail(ws, sha))

    v2 = exclude(ws, ref, ids=[5, 6])
    relabels = tmp / "relabel.csv"
    relabels.write_text("7,class_00\n8,class_01\n")
    v3 = relabel(ws, v2.ref, relabels)
    row(
        f"version diff ({args.items:,} vs {args.items:,})",
        lambda: G.version_diff(ws, "big", 1, v3.version),
    )

    table = ["| query | kind | first (ms) | median (ms) |", "|---|---|---:|---:|"]
    for r in rows:
        table.append(f"| {r['query']} | {r['kind']} | {r['first_ms']} | {r.get('median_ms', '')} |")
    print("\n".join(table))
    result = {
        "benchmark": "bench_console",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "items": args.items,
        "blobs": args.blobs,
        "repeat": args.repeat,
        "build_s": round(build_s, 2),
        "issue_index_cold_s": round(report_s, 2),
        "rows": rows,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_console.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "bench_console.md").write_text("\n".join(table) + "\n")
    ws.engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
