"""``autovision keys create|list|revoke``: API keys for the prediction server."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="API keys for the prediction server (stored hashed, shown once).",
    no_args_is_help=True,
)


class Role(StrEnum):
    predict = "predict"
    reviewer = "reviewer"
    admin = "admin"


def _audit(ws, action: str, **details) -> None:
    from autovision.security.audit import audit_event

    audit_event(ws, action, event="admin", **details)


@app.command("create")
@handle_errors
def create(
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="predict: prediction routes; reviewer: the review queue; admin: everything.",
        ),
    ] = Role.predict,
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    from autovision.security.keys import create_key

    ws = open_workspace(workspace)
    key_id, key = create_key(ws, role.value)
    _audit(ws, "keys.create", target=key_id, role=role.value)
    if json_:
        print_json({"id": key_id, "role": role.value, "key": key})
        return
    console.print(f"created API key {key_id} (role {role.value}); it is not shown again:")
    console.print(key, highlight=False, soft_wrap=True)


@app.command("list")
@handle_errors
def list_(json_: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List keys (id, role, created, revoked); never the keys themselves."""
    from rich.table import Table

    from autovision.security.keys import list_keys

    keys = list_keys(open_workspace(workspace))
    if json_:
        print_json({"keys": keys})
        return
    if not keys:
        console.print("no API keys: the server is open (loopback only by default)")
        return
    table = Table("id", "role", "created", "state")
    for k in keys:
        table.add_row(k["id"], k["role"], k["created_at"], "revoked" if k["revoked"] else "active")
    console.print(table)


@app.command("revoke")
@handle_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke a key; a running server refuses it within seconds."""
    from autovision.security.keys import revoke as revoke_key

    ws = open_workspace(workspace)
    try:
        revoke_key(ws, key_id)
    except Exception as exc:
        _audit(ws, "keys.revoke", outcome="error", target=key_id, error=str(exc))
        raise
    _audit(ws, "keys.revoke", target=key_id)
    if json_:
        print_json({"id": key_id, "revoked": True})
    else:
        console.print(f"revoked API key {key_id}")
