"""``autovision workspace upgrade [--check]``: the workspace database's schema revision."""

from __future__ import annotations

from typing import Annotated

import typer

from autovision.cli._common import JsonOpt, WorkspaceOpt, console, handle_errors, print_json

app = typer.Typer(help="The workspace itself: its database schema.", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Only report the current and the newest revision; exit 1 when an upgrade "
            "is pending.",
        ),
    ] = False,
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Upgrade the workspace database to this autovision's schema (opening a workspace
    does it too, unless AUTOVISION_AUTO_UPGRADE=0)."""
    from autovision.workspace.schema import upgrade_workspace

    r = upgrade_workspace(workspace, check=check)
    if json_:
        print_json(r)
    elif check:
        state = "up to date" if r["up_to_date"] else "upgrade pending"
        now = r["current"] or ("none (new database)" if r["new"] else "none (before migrations)")
        console.print(f"{r['database']}: revision {now}, head {r['head']}: {state}")
        for rev in r["pending"]:
            console.print(f"  pending: {rev}")
    else:
        done = r["upgrade"]
        if done["created"] and not done["applied"]:
            console.print(f"{r['database']}: created at revision {r['head']}")
        elif not done["applied"]:
            console.print(f"{r['database']}: already at revision {r['head']}")
        else:
            start = done["from"] or f"{done['stamped'] or 'none'} (detected)"
            console.print(f"{r['database']}: upgraded from {start} to {r['head']}")
            for rev in done["applied"]:
                console.print(f"  applied: {rev}")
    if check and not r["up_to_date"]:
        raise typer.Exit(1)
