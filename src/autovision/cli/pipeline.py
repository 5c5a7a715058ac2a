"""``autovision pipeline``: run, list, show and watch YAML pipelines; print their schema."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

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
    help="YAML pipelines from import to promotion: cached stages, gates, resume, watch.",
    no_args_is_help=True,
    add_completion=False,
)

COLOUR = {
    "done": "green",
    "reused": "cyan",
    "gate_failed": "red",
    "failed": "red",
    "skipped": "dim",
    "interrupted": "yellow",
    "running": "yellow",
    "would_run": "yellow",
    "would_reuse": "cyan",
}
FileArg = Annotated[Path, typer.Argument(help="The pipeline YAML file.", show_default=False)]


def _status(s: str) -> str:
    return f"[{COLOUR.get(s, 'white')}]{s}[/]"


def _print_report(r: dict[str, Any]) -> None:
    table = Table(
        title=f"pipeline {r['pipeline']} {r['run_id'] or '(dry run)'}", title_justify="left"
    )
    for col in ("stage", "status", "seconds", "message"):
        table.add_column(col, overflow="fold")
    for s in r["stages"]:
        secs = "" if s["seconds"] is None else f"{s['seconds']:.1f}"
        table.add_row(s["stage"], _status(s["status"]), secs, escape(s["message"]))
    console.print(table)
    colour = "green" if r["exit_code"] == 0 else "red"
    console.print(f"[{colour}]{escape(r['message'])}[/]", highlight=False, soft_wrap=True)


def _spec_error_json(exc: Any) -> None:
    print_json({"error": str(exc), "problems": exc.to_dict()})
    raise typer.Exit(1)


@app.command("run")
@handle_errors
def run_cmd(
    file: FileArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would run or be reused; run nothing.")
    ] = False,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            metavar="STAGE",
            help="Rerun this stage even if unchanged (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the pipeline: stages in dependency order, unchanged ones reused, gates judged;
    a killed run resumes where it stopped. Exit code 1 when a stage fails or a gate stops it."""
    from autovision.pipelines.runner import run_pipeline
    from autovision.pipelines.schema import SpecError

    ws = open_workspace(workspace)

    def say(msg: str) -> None:
        if not json_out:
            err_console.print(f"[dim]{escape(msg)}[/]", highlight=False, soft_wrap=True)

    try:
        report = run_pipeline(ws, file, force=force or (), dry_run=dry_run, log=say)
    except SpecError as exc:
        if json_out:
            _spec_error_json(exc)
        raise
    out = report.to_dict()
    if json_out:
        print_json(out)
    else:
        _print_report(out)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _when(iso: str | None) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else ""


@app.command("list")
@handle_errors
def list_cmd(
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", help="Only this pipeline's runs.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(help="Newest runs shown.")] = 20,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Pipeline runs, newest first, with each stage's status."""
    from autovision.pipelines.store import list_runs

    runs = list_runs(open_workspace(workspace), pipeline, limit=limit)
    if json_out:
        print_json(runs)
        return
    table = Table(title=f"{len(runs)} pipeline run(s)", title_justify="left")
    for col in ("run", "pipeline", "started", "status", "stages", "message"):
        table.add_column(col, overflow="fold")
    for r in runs:
        stages = " ".join(f"{k}:{_status(v)}" for k, v in r["stages"].items())
        table.add_row(
            r["id"],
            r["pipeline"],
            _when(r["created_at"]),
            _status(r["status"]),
            stages,
            escape(r["message"]),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_cmd(
    run_id: Annotated[str, typer.Argument(help="A run id (see `pipeline list`).")],
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """One run: every stage's parameters, inputs, outputs, gate and timing."""
    import json

    from autovision.pipelines.store import get_run

    run = get_run(open_workspace(workspace), run_id)
    if json_out:
        print_json(run)
        return
    console.print(
        f"[bold]{run['id']}[/] pipeline {run['pipeline']} ({run['file']}): "
        f"{_status(run['status'])}, {_when(run['created_at'])} - {_when(run['finished_at'])}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(escape(run["message"]), highlight=False)
    for s in run["stages"]:
        secs = "" if s["seconds"] is None else f", {s['seconds']:.1f}s"
        console.print(
            f"\n[bold]{s['stage']}[/] {_status(s['status'])}{secs}: {escape(s['message'])}",
            highlight=False,
            soft_wrap=True,
        )
        for key in ("params", "inputs", "outputs"):
            if s[key]:
                text = json.dumps(s[key], default=str)
                console.print(
                    f"  {key}: {escape(text[:400])}" + (" ..." if len(text) > 400 else ""),
                    highlight=False,
                    soft_wrap=True,
                )


@app.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of pipeline files (for editors)."""
    from autovision.pipelines.schema import json_schema

    print_json(json_schema())


@app.command("watch")
@handle_errors
def watch_cmd(
    file: FileArg,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Look for changes this often (10m, 1h) and run on one.",
            show_default=False,
        ),
    ] = None,
    on_change: Annotated[
        bool, typer.Option("--on-change", help="Look every --poll seconds and run on a change.")
    ] = False,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between looks with --on-change.", min=0.05)
    ] = 2.0,
    max_runs: Annotated[
        int | None,
        typer.Option("--max-runs", help="Stop after this many runs.", min=1, show_default=False),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Run the pipeline whenever its source changes (new or changed files found by listing
    and content hash), at most one run at a time; each decision is logged."""
    from autovision.pipelines.watch import watch
    from autovision.search.budget import parse_duration

    if (every is None) == (not on_change):
        fail("give either --every DURATION or --on-change", code=2)
    seconds = parse_duration(every) if every is not None else poll

    def say(msg: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        console.print(f"{stamp} {escape(msg)}", highlight=False, soft_wrap=True)

    def run_log(msg: str) -> None:
        err_console.print(f"[dim]  {escape(msg)}[/]", highlight=False, soft_wrap=True)

    try:
        watch(
            open_workspace(workspace),
            str(file),
            every=seconds,
            max_runs=max_runs,
            log=say,
            run_log=run_log,
        )
    except KeyboardInterrupt:
        say("stopped")
