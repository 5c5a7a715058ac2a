"""``autovision worker``: a trial worker that joins a running search (``train --workers``)."""

from __future__ import annotations

from typing import Annotated

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    print_json,
)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


@handle_errors
def worker(
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            help="The run id to join (default: the newest open search).",
            show_default=False,
        ),
    ] = None,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="The workspace database (default: AUTOVISION_DB_URL, "
            "else the workspace's SQLite file).",
            show_default=False,
        ),
    ] = None,
    blob_url: Annotated[
        str | None,
        typer.Option(
            "--blob-url",
            help="The workspace blobs (default: AUTOVISION_BLOB_URL, "
            "else the workspace's blobs/ folder).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="CPU threads for its trials (default: every core, or AUTOVISION_THREADS).",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for a search to start."),
    ] = 600.0,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Join a search started with `autovision train --workers N` (or wait for one): ask its
    study for trials and train them until its exploration ends."""
    from autovision.search.workers import run_worker, wait_for_run
    from autovision.workspace import Workspace

    ws = Workspace(workspace, db_url=db_url, blob_url=blob_url)

    def waiting(message: str) -> None:
        err_console.print(message, highlight=False)

    run_id = wait_for_run(ws.db_url, run, timeout=wait, on_wait=waiting)
    if not json_output:
        err_console.print(f"joining search {run_id}", highlight=False)
    report = run_worker(str(ws.root), ws.db_url, ws.blobs.url, run_id, threads=threads)
    if json_output:
        print_json(report.to_dict())
        return
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.states.items())) or "none"
    console.print(
        f"worker {report.worker}: {len(report.trials)} trials ({states}), "
        f"stopped: {report.stop_reason}",
        highlight=False,
    )
