"""``autovision monitor``: drift of a model's recent logged predictions against its test split."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)


@handle_errors
def monitor(
    model: Annotated[
        str, typer.Argument(help="Model: NAME, NAME@ALIAS, NAME@VERSION or a model id.")
    ],
    since: Annotated[
        str | None,
        typer.Option(
            help="Predictions of the last 24h, 90m, 7d... (default 24h).", show_default=False
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option(
            help="The newest N predictions instead of --since.", min=1, show_default=False
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-alarm rate of the whole family.")] = 0.05,
    report: Annotated[
        str | None,
        typer.Option(
            help="Write a self-contained HTML drift report here (a file or an s3:// URL).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Drift tests (labels, softmax, confidence, embeddings, input stats) against the reference."""
    from autovision.monitoring.monitor import monitor as run_monitor

    ws = open_workspace(workspace)
    result = run_monitor(ws, model, since=since, last=last, alpha=alpha, report=report)
    if json_output:
        print_json(result)
    else:
        _print(result)


def _print(r: dict[str, Any]) -> None:
    from rich.table import Table

    style = {"drift": "bold red", "no_drift": "green", "not_enough_data": "yellow"}
    v = r["verdict"]
    console.print(
        f"{r['model']}: [{style[v]}]{v.replace('_', ' ')}[/] on {r['samples']} predictions "
        f"(reference {r['reference_samples']} images of {r['reference']['dataset']})"
    )
    for note in r["notes"]:
        console.print(f"  {note}")
    table = Table("test", "method", "statistic", "p-value", "threshold", "verdict")
    for t in r["tests"]:
        cells = [t["statistic"], t["p_value"], t["threshold"]]
        table.add_row(
            t["name"],
            t["method"] or "",
            *("n/a" if c is None else f"{c:.3g}" for c in cells),
            f"[{style[t['verdict']]}]{t['verdict']}[/]",
        )
    console.print(table)
    out = r.get("outliers") or {}
    if out.get("checked"):
        console.print(
            f"outliers: {out['flagged']} of {out['checked']} predictions far from the reference "
            f"(k-NN cosine distance > {out['threshold']:.3g}); {out['queued']} newly queued for "
            "review (`autovision review list`)"
        )
    if r.get("report"):
        console.print(f"report: {r['report']}")
