"""``autovision audit verify|show``: check the audit log's hash chain, read its events."""

from __future__ import annotations

from typing import Annotated

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    fail,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="The audit log: verify its hash chain, show its events.",
    no_args_is_help=True,
)


@app.command("verify")
@handle_errors
def verify(
    expect_tail: Annotated[
        str | None,
        typer.Option(
            "--expect-tail",
            help="A line hash recorded earlier (the tail hash this prints): the log must "
            "still hold that line, which catches a cut-off tail.",
        ),
    ] = None,
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Walk the chain: OK with the line count, or the first broken line and why (exit 1)."""
    from autovision.security.audit import verify_log

    ws = open_workspace(workspace)
    verdict = verify_log(ws.audit_log_path, expect_tail=expect_tail)
    if json_:
        print_json({"path": str(ws.audit_log_path), **verdict.to_dict()})
    else:
        console.print(verdict.message(), highlight=False, markup=False, soft_wrap=True)
        for note in verdict.notes:
            console.print(note, highlight=False, markup=False)
        if verdict.ok and verdict.tail_hash:
            console.print(
                f"tail: seq {verdict.tail_seq} hash {verdict.tail_hash} (keep it elsewhere; "
                "`--expect-tail HASH` later shows a cut-off or rewritten log)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("show")
@handle_errors
def show(
    since: Annotated[
        str | None, typer.Option("--since", help="Only the last 90s, 10m, 1h, 2d...")
    ] = None,
    event: Annotated[
        str | None,
        typer.Option("--event", help="Only this event or action (dataset, dataset.import...)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest).")] = 100,
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The newest events, oldest first."""
    from autovision.errors import TrainingError
    from autovision.search.budget import parse_duration
    from autovision.security.audit import select_events

    since_s = None
    if since is not None:
        try:
            since_s = parse_duration(since)
        except TrainingError:
            fail(f"invalid --since {since!r}: expected a duration like 90s, 10m, 1h or 2d", 2)
    ws = open_workspace(workspace)
    events = select_events(ws.audit_log_path, since_s=since_s, event=event, limit=limit)
    if json_:
        print_json({"events": events})
        return
    if not events:
        console.print("no audit events" + (" match" if since or event else ""))
        return
    skip = {"time", "event", "action", "outcome", "seq", "prev"}
    for e in events:
        what = e.get("action") or e.get("event")
        rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in skip and v is not None)
        outcome = e.get("outcome", "")
        line = f"{e.get('time', '')}  {what}  {outcome}  {rest}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)
