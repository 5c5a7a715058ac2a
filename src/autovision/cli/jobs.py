"""``autovision jobs``: background jobs (trainings started from the console): list, show,
cancel, recover. A thin layer over :mod:`autovision.jobs`."""

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

app = typer.Typer(
    help="Background jobs (trainings run by worker processes): list, show, cancel, recover.",
    no_args_is_help=True,
    add_completion=False,
)

STATUS_COLOUR = {
    "queued": "cyan",
    "running": "blue",
    "done": "green",
    "failed": "red",
    "interrupted": "yellow",
    "cancelled": "dim",
}


def _status(s: str) -> str:
    return f"[{STATUS_COLOUR.get(s, 'white')}]{s}[/]"


def _num(v: Any, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else fmt.format(v)


@app.command("list")
@handle_errors
def list_cmd(
    kind: Annotated[
        str | None, typer.Option(help="Only jobs of this kind (train).", show_default=False)
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Only jobs with this status.", show_default=False)
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    from autovision.jobs import list_jobs

    jobs = list_jobs(open_workspace(workspace), kind=kind, status=status)
    if json_output:
        print_json(jobs)
        return
    table = Table()
    table.add_column("job", no_wrap=True)
    for col in ("kind", "status", "dataset", "user", "created", "model"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        table.add_row(
            j["id"],
            j["kind"],
            _status(j["status"]),
            escape(str(j["dataset"])),
            escape(str(j["user"] or "-")),
            (j["created_at"] or "")[:16].replace("T", " "),
            escape(j["model"] or "-"),
        )
    console.print(table if jobs else "no jobs")


@app.command("show")
@handle_errors
def show(
    job_id: Annotated[str, typer.Argument(help="The job id (see `autovision jobs list`).")],
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """A job's status and progress: trials so far, the best, the budget, the result."""
    from autovision.jobs import job_status
    from autovision.search.budget import format_seconds

    st = job_status(open_workspace(workspace), job_id)
    if json_output:
        print_json(st)
        return
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_row("job", f"{st['id']} ({st['kind']})")
    head.add_row("status", f"{_status(st['status'])} (attempt {st['attempts']})")
    head.add_row("dataset", escape(str(st["dataset"])))
    head.add_row("user", escape(str(st["user"] or "-")))
    b = st["budget"]
    used = []
    if b.get("seconds") is not None:
        spent = format_seconds(b["used_seconds"] or 0)
        used.append(f"{spent} of {format_seconds(b['seconds'])}")
    if b.get("trials") is not None:
        used.append(f"{b['used_trials']} of {b['trials']} trials")
    head.add_row("budget", ", ".join(used) or "-")
    if best := st["best"]:
        head.add_row(
            "best",
            f"trial {best['trial']} {best['backbone']}/{best['mode']}@{best['size']} "
            f"val {_num(best['score'])}",
        )
    if st["stop_reason"]:
        head.add_row("stop reason", st["stop_reason"])
    if st["model"]:
        head.add_row("model", f"[bold]{escape(st['model'])}[/]")
    if st["error"]:
        head.add_row("error", f"[red]{escape(st['error'])}[/]")
    console.print(head)
    if st["trials"]:
        table = Table()
        for col in ("trial", "state", "backbone", "mode", "size", "score", "time"):
            table.add_column(col)
        for t in st["trials"]:
            table.add_row(
                str(t["trial"]),
                str(t["state"]),
                str(t["backbone"] or "-"),
                str(t["mode"] or "-"),
                str(t["size"] or "-"),
                _num(t["score"]),
                _num(t["seconds"], "{:.1f}s"),
            )
        console.print(table)


@app.command("cancel")
@handle_errors
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Stop a job: its worker is terminated and it is never resumed."""
    from autovision.jobs import cancel_job

    st = cancel_job(open_workspace(workspace), job_id)
    if json_output:
        print_json(st)
        return
    console.print(f"job {st['id']}: {_status(st['status'])}")


@app.command("recover")
@handle_errors
def recover(
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Mark lost jobs interrupted, do not resume.")
    ] = False,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Find jobs whose worker is gone and resume them (what the console does at start)."""
    from autovision.jobs import recover_jobs

    actions = recover_jobs(open_workspace(workspace), resume=not no_resume)
    if json_output:
        print_json(actions)
        return
    for a in actions:
        console.print(f"job {a['id']}: {a['action']} ({escape(a['why'])})", highlight=False)
    if not actions:
        console.print("no job to recover")
