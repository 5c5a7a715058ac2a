"""``autovision logs list|export|purge``: the prediction log the server records."""

from __future__ import annotations

from pathlib import Path
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

app = typer.Typer(help="The prediction log: list, export and purge logged predictions.")

ModelArg = Annotated[
    str, typer.Argument(help="NAME (every version), NAME@3 or NAME@ALIAS (one version).")
]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", help="Only the last stretch (1h, 24h, 7d).", show_default=False),
]
LabelOpt = Annotated[
    str | None,
    typer.Option("--label", help="Only predictions that decided this label.", show_default=False),
]
BelowOpt = Annotated[
    float | None,
    typer.Option(
        "--below", min=0.0, max=1.0, help="Only top-1 confidence under this.", show_default=False
    ),
]


def _records(ws: Any, model: str, **filters: Any) -> list[dict[str, Any]]:
    from autovision.monitoring.log import query, resolve_scope

    return query(ws, **resolve_scope(ws, model), **filters)


@app.command("list")
@handle_errors
def list_(
    model: ModelArg,
    since: SinceOpt = None,
    label: LabelOpt = None,
    below: BelowOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Predictions shown (newest first).")] = 50,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Logged predictions of a model, newest first; ``total`` counts every match."""
    records = _records(open_workspace(workspace), model, since=since, label=label, below=below)
    if json_output:
        print_json({"total": len(records), "predictions": records[:limit]})
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("time", "id", "version", "route", "labels", "confidence", "margin", "ms"):
        table.add_column(col, overflow="fold")
    for r in records[:limit]:
        table.add_row(
            (r["time"] or "")[:19].replace("T", " "),
            r["id"],
            str(r["version"] if r["version"] is not None else r["model_id"]),
            r["route"],
            ", ".join(r["labels"]),
            f"{r['confidence']:.3f}",
            f"{r['margin']:.3f}",
            f"{r['latency_ms']:.1f}",
        )
    console.print(table)
    console.print(f"{min(limit, len(records))} of {len(records)} prediction(s)", highlight=False)


@app.command("export")
@handle_errors
def export(
    model: ModelArg,
    out: Annotated[Path, typer.Argument(help="The JSON-lines file to write.")],
    since: SinceOpt = None,
    label: LabelOpt = None,
    below: BelowOpt = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Every matching logged prediction as one JSON object per line."""
    from autovision.monitoring.log import export_jsonl

    ws = open_workspace(workspace)
    n = export_jsonl(ws, out, _records(ws, model, since=since, label=label, below=below))
    if json_output:
        print_json({"exported": n, "output": str(out)})
    else:
        console.print(f"exported {n} prediction(s) to {out}", highlight=False)


@app.command("purge")
@handle_errors
def purge(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete records older than this (30d, 12h).")
    ] = "30d",
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete old records and their images (images a dataset version uses are kept)."""
    from autovision.monitoring.log import purge as purge_log

    result = purge_log(open_workspace(workspace), older_than)
    if json_output:
        print_json(result)
        return
    console.print(
        f"purged {result['records']} record(s) older than {older_than}: "
        f"{result['images_deleted']} image(s) deleted, {result['images_kept']} kept "
        "(used by a dataset or a newer record)",
        highlight=False,
    )
