"""``autovision usage``: what training and serving cost, and the storage in use."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)


@handle_errors
def usage(
    since: Annotated[
        str,
        typer.Option("--since", help="Records of this last stretch (7d, 24h, 90m) or 'all'."),
    ] = "7d",
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Per training run: wall and CPU seconds, node-hours, peak memory, GPU seconds, trials
    and stop reason; per served model: predictions, CPU s per 1,000, p50/p99 latency; and
    storage bytes by dataset and model."""
    from autovision.usage.report import usage_report

    report = usage_report(open_workspace(workspace), since)
    if json_output:
        print_json(report.to_dict())
        return
    console.print(f"usage since {report.since or 'the beginning'}", highlight=False)
    console.print(_train_table(report.train) if report.train else "no training runs")
    console.print(_serve_table(report.serve) if report.serve else "no served predictions")
    console.print(_storage_table(report.storage))


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f}{unit[0]}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(title: str, folded: tuple[str, ...], columns: tuple[str, ...]) -> Table:
    """Columns in ``folded`` wrap (names, ids); the figures stay on one line."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in columns:
        if col in folded:
            table.add_column(col, overflow="fold", ratio=1)
        else:
            table.add_column(col, no_wrap=True, justify="left")
    return table


def _train_table(rows: list[dict[str, Any]]) -> Table:
    cols = ("ended", "model", "wall s", "CPU s", "node-h", "peak", "GPU s", "trials")
    table = _table("training runs", ("model",), (*cols, "stop"))
    for r in rows:
        table.add_row(
            f"{r['ended_at'][5:16].replace('T', ' ')}\n{r['dataset']}",
            str(r["ref"] or "-"),
            _num(r["wall_s"]),
            _num(r["cpu_s"]),
            _num(r["node_hours"], "{:.4f}"),
            _bytes(r["peak_rss_bytes"]),
            _num(r["gpu_s"]),
            _num(r["trials"], "{}"),
            str(r["stop_reason"] or "-"),
        )
    return table


def _serve_table(rows: list[dict[str, Any]]) -> Table:
    cols = ("model", "windows", "requests", "images", "CPU s/1000", "p50 ms", "p99 ms")
    table = _table("served models", ("model",), cols)
    for r in rows:
        table.add_row(
            str(r["ref"]),
            str(r["windows"]),
            str(r["requests"]),
            str(r["predictions"]),
            _num(r["cpu_s_per_1000"], "{:.2f}"),
            _num(r["p50_ms"], "{:.2f}"),
            _num(r["p99_ms"], "{:.2f}"),
        )
    return table


def _storage_table(st: dict[str, Any]) -> Table:
    table = _table("storage", ("name",), ("what", "name", "files", "bytes"))
    for d in st["datasets"]:
        table.add_row("dataset", d["dataset"], str(d["blobs"]), _bytes(d["bytes"]))
    for m in st["models"]:
        table.add_row("model", str(m["ref"]), str(m["files"]), _bytes(m["bytes"]))
    logs = st["prediction_logs"]
    table.add_row(
        "prediction logs", f"{logs['records']} records", str(logs["images"]), _bytes(logs["bytes"])
    )
    table.add_row("total", "blobs (once each) + models", "-", _bytes(st["total_bytes"]))
    return table
