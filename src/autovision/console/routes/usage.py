"""The usage page: the figures of ``autovision usage`` (training runs, served models,
storage) as tables, with bar charts of the storage and of the predictions served."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from autovision.console.auth import User
from autovision.console.charts_usage import Bar, hbars
from autovision.console.deps import console_state, render, require
from autovision.usage.report import UsageError, usage_report

router = APIRouter()
PERIODS = (
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
    ("all", "all time"),
)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _num(v: Any, fmt: str = "{:,.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def _when(iso: str | None) -> str:
    return (iso or "")[:16].replace("T", " ")


def _train_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "ended": _when(r["ended_at"]),
            "dataset": r.get("dataset") or "–",
            "model": r.get("ref") or "–",
            "outcome": r.get("outcome") or "–",
            "wall": _num(r.get("wall_s")),
            "cpu": _num(r.get("cpu_s")),
            "node_hours": _num(r.get("node_hours"), "{:.4f}"),
            "peak": human_bytes(r.get("peak_rss_bytes")),
            "gpu": _num(r.get("gpu_s")),
            "device": r.get("device") or "–",
            "trials": _num(r.get("trials"), "{}"),
            "stop": r.get("stop_reason") or "–",
            "error": r.get("error"),
        }
        for r in rows
    ]


def _serve_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "model": r["ref"],
            "shadow": r.get("shadow"),
            "windows": r["windows"],
            "first": _when(r["first"]),
            "last": _when(r["last"]),
            "requests": f"{r['requests']:,}",
            "predictions": f"{r['predictions']:,}",
            "cpu": _num(r.get("cpu_s"), "{:,.2f}"),
            "cpu_per_1000": _num(r.get("cpu_s_per_1000"), "{:.2f}"),
            "p50": _num(r.get("p50_ms"), "{:.2f}"),
            "p99": _num(r.get("p99_ms"), "{:.2f}"),
        }
        for r in rows
    ]


def _storage(st: dict[str, Any]) -> dict[str, Any]:
    rows = [
        {
            "what": "dataset",
            "name": d["dataset"],
            "count": f"{d['blobs']:,} images",
            "bytes": d["bytes"],
            "missing": d["missing_blobs"],
        }
        for d in st["datasets"]
    ] + [
        {
            "what": "model",
            "name": m["ref"],
            "count": f"{m['files']} files",
            "bytes": m["bytes"],
            "missing": 0,
        }
        for m in st["models"]
    ]
    logs = st["prediction_logs"]
    rows.append(
        {
            "what": "prediction log",
            "name": f"{logs['records']:,} records",
            "count": f"{logs['images']:,} images",
            "bytes": logs["bytes"],
            "missing": 0,
            "note": logs.get("note"),
        }
    )
    for r in rows:
        r["size"] = human_bytes(r["bytes"])
    kinds = {"dataset": "dataset", "model": "model", "prediction log": "logs"}
    chart = hbars(
        [
            Bar(
                r["name"] if r["what"] != "prediction log" else "prediction log",
                r["bytes"],
                r["size"],
                kinds[r["what"]],
            )
            for r in sorted(rows, key=lambda r: -r["bytes"])
            if r["bytes"]
        ][:20]
    )
    return {"rows": rows, "chart": chart, "total": human_bytes(st["total_bytes"])}


@router.get("/usage")
def usage_page(
    request: Request, user: Annotated[User, Depends(require("read"))], since: str = "7d"
) -> Response:
    since = (since or "7d").strip()[:20]
    try:
        report = usage_report(console_state(request).ws, since)
    except UsageError as exc:
        return render(
            request, "usage.html", status_code=400, error=str(exc), since=since, periods=PERIODS
        )
    train, serve = report.train, report.serve
    predictions_chart = hbars(
        [
            Bar(
                r["ref"] + (" (shadow)" if r.get("shadow") else ""),
                r["predictions"],
                f"{r['predictions']:,}",
            )
            for r in sorted(serve, key=lambda r: -r["predictions"])
        ][:20]
    )
    totals = {
        "runs": len(train),
        "node_hours": _num(sum(r.get("node_hours") or 0 for r in train), "{:.3f}"),
        "cpu_hours": _num(sum(r.get("cpu_s") or 0 for r in train) / 3600, "{:.2f}"),
        "predictions": f"{sum(r['predictions'] for r in serve):,}",
    }
    return render(
        request,
        "usage.html",
        since=since,
        periods=PERIODS,
        report=report,
        totals=totals,
        train=_train_rows(train),
        serve=_serve_rows(serve),
        predictions_chart=predictions_chart,
        storage=_storage(report.storage),
        generated=_when(report.generated_at),
        error=None,
    )
