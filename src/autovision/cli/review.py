"""``autovision review``: the queue of uncertain, flagged and client-questioned predictions;
label or skip them (one by one or from a CSV), and see how the reviews went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    fail,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="Review uncertain predictions: list, label, skip, stats.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("list")
@handle_errors
def list_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option("--limit", help="Items shown.")] = 50,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The queue, smallest margin first, predicted classes interleaved."""
    from autovision.monitoring import review

    out = review.queue(open_workspace(workspace), name, limit=limit)
    if json_out:
        print_json(out)
        return
    table = Table("id", "time", "version", "predicted", "conf", "margin", "why", "feedback")
    for it in out["items"]:
        fb = ",".join((it["feedback"] or {}).get("labels") or [])
        table.add_row(
            it["id"],
            (it["time"] or "")[:19],
            str(it["version"] or ""),
            escape(",".join(it["labels"]) or it["top_label"]),
            f"{it['confidence']:.3f}",
            f"{it['margin']:.3f}",
            it["reason"] or "",
            escape(fb),
        )
    console.print(table)
    console.print(f"{out['total']} queued (review below {out['review_below']:g})")


@app.command("label")
@handle_errors
def label_cmd(
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="PREDICTION_ID LABEL [LABEL...]", show_default=False),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="CSV rows: prediction_id,label[,label...].", show_default=False
        ),
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Give a prediction its right labels (the model's labels only)."""
    from autovision.monitoring import review

    ws = open_workspace(workspace)
    if file is not None:
        if args:
            fail("give either --file or PREDICTION_ID LABEL..., not both", 2)
        out = review.label_file(ws, file)
        if json_out:
            print_json(out)
        else:
            for e in out["errors"]:
                err_console.print(f"{escape(str(file))}:{e['line']}: {escape(e['message'])}")
            console.print(f"labeled {out['applied']}; {len(out['errors'])} row(s) refused")
        if out["errors"] and not out["applied"]:
            raise typer.Exit(1)
        return
    if not args or len(args) < 2:
        fail("give PREDICTION_ID and at least one LABEL (or --file corrections.csv)", 2)
    item = review.label(ws, args[0], args[1:])
    if json_out:
        print_json(item)
    else:
        console.print(f"{item['id']}: labeled {escape(', '.join(item['review_labels']))}")


@app.command("skip")
@handle_errors
def skip_cmd(
    prediction_id: Annotated[str, typer.Argument(help="Prediction id (p-...).")],
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Take a prediction out of the queue without a label."""
    from autovision.monitoring import review

    item = review.skip(open_workspace(workspace), prediction_id)
    if json_out:
        print_json(item)
    else:
        console.print(f"{item['id']}: skipped")


@app.command("stats")
@handle_errors
def stats_cmd(
    name: Annotated[str, typer.Argument(help="Model name.")],
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Queued, labeled, skipped; labels given; agreement with the model."""
    from autovision.monitoring import review

    out = review.stats(open_workspace(workspace), name)
    if json_out:
        print_json(out)
        return
    agree = "-" if out["agreement"] is None else f"{out['agreement']:.1%}"
    console.print(
        f"{escape(name)}: {out['queued']} queued, {out['labeled']} labeled, "
        f"{out['skipped']} skipped; reviewers agreed with the model on {agree}"
    )
    for lab, n in out["by_label"].items():
        console.print(f"  {escape(lab)}: {n}")
