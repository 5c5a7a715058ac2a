"""``autovision retrain``: train the next version of a named model and promote it past a gate."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
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
    app.command("retrain")(retrain)


def _print_result(r: dict[str, Any]) -> None:
    table = Table(title=f"{r['name']}@{r['alias']} on the test split of {r['dataset']}")
    table.add_column("")
    table.add_column("version")
    table.add_column("model")
    table.add_column(r["metric"], justify="right")
    for role in ("incumbent", "candidate"):
        side = r[role]
        table.add_row(role, str(side["version"]), side["id"], f"{side['metric']:.4f}")
    console.print(table)
    for note in r.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    colour = "green" if r["promoted"] else "yellow"
    console.print(f"[bold {colour}]{escape(r['reason'])}[/]", highlight=False)


def _issues(value: str) -> str:
    """``--exclude-issues``: ``none`` (any case) is the empty list, anything else as given."""
    return "" if value.strip().lower() == "none" else value


@handle_errors
def retrain(
    name: Annotated[str, typer.Argument(help="Model name.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset NAME or NAME@N (default: the newest version of the incumbent's).",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[str, typer.Option(help="Wall-clock training budget: 90s, 10m, 2h.")] = "10m",
    trials: Annotated[
        int | None, typer.Option(help="Stop after this many trials.", show_default=False)
    ] = None,
    alias: Annotated[str, typer.Option(help="The alias to judge against and move.")] = "production",
    min_gain: Annotated[
        float,
        typer.Option("--min-gain", help="How much better the candidate must be to be promoted."),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    exclude_issues: Annotated[
        str | None,
        typer.Option(
            "--exclude-issues",
            help="Leave the images these issues flag out of the candidate's training and "
            "validation (never out of the test split), e.g. label_issues,outliers; 'none' for "
            "none (default: the issues the incumbent was trained without).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Train a new version of NAME from NAME@ALIAS; move ALIAS only when it scores at least
    as well on the same test split (accuracy, or macro F1 for multi-label) plus --min-gain."""
    from autovision.versions.retrain import retrain as run_retrain

    ws = open_workspace(workspace)
    kwargs = dict(
        dataset=dataset,
        budget=budget,
        alias=alias,
        min_gain=min_gain,
        trials=trials,
        seed=seed,
        exclude_issues=None if exclude_issues is None else _issues(exclude_issues),
    )
    if json_output:
        print_json(run_retrain(ws, name, **kwargs).to_dict())
        return
    from autovision.cli.train import ProgressView

    with ProgressView(console) as view:
        result = run_retrain(ws, name, progress=view, **kwargs)
    _print_result(result.to_dict())
