"""``autovision evaluate``: metrics of a model on a held-out split, JSON and an HTML report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)


@handle_errors
def evaluate(
    model: Annotated[
        str, typer.Argument(help="Model: NAME, NAME@VERSION, NAME@ALIAS or a model id.")
    ],
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset NAME or NAME@N with the model's labels (default: the model's own).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate on.")] = "test",
    report: Annotated[
        str | None,
        typer.Option(
            help="Write a self-contained HTML report here (a file or an s3:// URL).",
            show_default=False,
        ),
    ] = None,
    slice_by: Annotated[
        str | None,
        typer.Option(
            "--slice-by",
            help="Metadata attributes to compare by value, comma-separated (skin_tone,camera).",
            show_default=False,
        ),
    ] = None,
    max_slice_gap: Annotated[
        float,
        typer.Option(
            "--max-slice-gap",
            help="Flag a metric whose gap between two attribute values exceeds this.",
        ),
    ] = 0.05,
    min_slice_support: Annotated[
        int,
        typer.Option(
            "--min-slice-support",
            help="Images a value needs (for the metric) before its gap can be flagged.",
        ),
    ] = 30,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Evaluate a model on its test split: accuracy, P/R/F1, ROC/PR AUC, thresholds, calibration."""
    from autovision.evaluation.api import evaluate as run_evaluation

    ws = open_workspace(workspace)
    with _progress_bar(enabled=not json_output) as progress:
        result = run_evaluation(
            ws,
            model,
            dataset=dataset,
            split=split,
            report=report,
            slice_by=slice_by,
            max_slice_gap=max_slice_gap,
            min_slice_support=min_slice_support,
            progress=progress,
        )
    if json_output:
        print_json(result)
    else:
        _print_summary(result)


def _f(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _print_summary(r: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{r['model']}[/] on {r['dataset']} ({r['split']} split): "
        f"{r['images']} images, {len(r['labels'])} labels, {r['task']}",
        highlight=False,
    )
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="dim")
    summary.add_column(justify="right")

    def avg(key: str, *parts: str) -> str:
        return " / ".join(_f(r[key][k]) for k in parts)

    rows = [("accuracy" if r["task"] == "single-label" else "subset accuracy", _f(r["accuracy"]))]
    if r["top_k"]:
        rows.append((f"top-{r['top_k']} accuracy", _f(r["top_k_accuracy"])))
    if r["task"] == "multi-label":
        rows.append(("Hamming loss", _f(r["hamming_loss"])))
    rows += [
        ("log loss", _f(r["log_loss"])),
        ("macro precision / recall / F1", avg("macro", "precision", "recall", "f1")),
        ("micro precision / recall / F1", avg("micro", "precision", "recall", "f1")),
        ("ROC AUC macro / micro", avg("roc_auc", "macro", "micro")),
        ("average precision macro / micro", avg("average_precision", "macro", "micro")),
        ("calibration error (ECE)", _f(r["calibration"]["ece"])),
    ]
    for name, shown in rows:
        summary.add_row(name, shown)
    console.print(summary)
    console.print()

    per = Table(title="Per label", title_justify="left")
    for col in ("label", "support", "precision", "recall", "F1", "AP", "ROC AUC"):
        per.add_column(col, justify="left" if col == "label" else "right")
    for lab, m in r["per_label"].items():
        per.add_row(
            lab,
            str(m["support"]),
            *(_f(m[k]) for k in ("precision", "recall", "f1", "average_precision", "roc_auc")),
        )
    console.print(per)

    if r["most_confused"]:
        console.print("[bold]Most confused[/] (true -> predicted: images)")
        for p in r["most_confused"][:5]:
            console.print(f"  {p['true']} -> {p['predicted']}: {p['count']}", highlight=False)
    for s in r.get("slices", {}).values():
        _print_slices(s)
    for note in r.get("notes", []):
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"Metrics: {r['metrics_path']}", highlight=False, soft_wrap=True)
    if "report" in r:
        console.print(f"Report: {r['report']}", highlight=False, soft_wrap=True)


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _print_slices(s: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"Slices by {s['key']}", title_justify="left")
    for col in ("value", "images", "accuracy (95% CI)", "macro F1", ""):
        table.add_column(col, justify="left" if col in ("value", "") else "right")
    for x in s["values"]:
        table.add_row(
            "(missing)" if x["value"] is None else str(x["value"]),
            str(x["images"]),
            _f(x["accuracy"]) + _ci(x["accuracy_ci"]),
            _f(x["macro"]["f1"]),
            "[yellow]insufficient support[/]" if x["insufficient_support"] else "",
        )
    console.print(table)
    flagged = [(m, s["gaps"][m]) for m in s["flagged"]]
    for metric, g in flagged:
        a, b = ("(missing)" if v is None else v for v in g["between"])
        console.print(
            f"[red]flagged[/] {metric}: gap {g['gap']:.3f} between {a} ({g['figures'][0]:.3f}, "
            f"n={g['support'][0]}) and {b} ({g['figures'][1]:.3f}, n={g['support'][1]})",
            highlight=False,
        )
    if not flagged:
        console.print(
            f"no gap above {s['max_gap']:.3f} between values with >= {s['min_support']} images",
            highlight=False,
        )


@contextlib.contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A transient rich progress bar on stderr while the split is predicted."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("evaluate", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
