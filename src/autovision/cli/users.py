"""``autovision users create|list|disable|passwd``: password logins of the web console
(library: :mod:`autovision.console.auth`; every change is in the audit log)."""

from __future__ import annotations

import sys
from enum import StrEnum
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

app = typer.Typer(help="Console users (passwords stored as argon2id hashes).", no_args_is_help=True)


class Role(StrEnum):
    admin = "admin"
    trainer = "trainer"
    reviewer = "reviewer"
    viewer = "viewer"


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
        if typer.prompt("Repeat the password", hide_input=True) != password:
            fail("the two passwords differ")
    if not password:
        fail("no password given")
    return password


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '.', '_', '-').")],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            help="admin: everything; trainer: import, edit, train, label; reviewer: review "
            "and label; viewer: read only.",
        ),
    ] = Role.viewer,
    password_stdin: PasswordStdin = False,
    json_: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a console login."""
    from autovision.console.auth import check_role, check_user_name, create_user

    check_user_name(name)
    check_role(role.value)
    ws = open_workspace(workspace)
    user = create_user(ws, name, role.value, _password(password_stdin))
    if json_:
        print_json(user)
        return
    console.print(f"created console user {name} (role {role.value})", highlight=False)


@app.command("list")
@handle_errors
def list_(json_: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List console users (name, role, created, state); never the password hashes."""
    from rich.table import Table

    from autovision.console.auth import list_users

    users = list_users(open_workspace(workspace))
    if json_:
        print_json({"users": users})
        return
    if not users:
        console.print("no console users: `autovision users create NAME --role admin`")
        return
    table = Table("name", "role", "created", "state")
    for u in users:
        state = "disabled" if u["disabled"] else "active"
        table.add_row(u["name"], u["role"], u["created_at"][:19], state)
    console.print(table)


@app.command("disable")
@handle_errors
def disable(
    name: Annotated[str, typer.Argument(help="User name.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Disable a login; its open sessions end at once (`users passwd` enables it again)."""
    from autovision.console.auth import disable_user

    disable_user(open_workspace(workspace), name)
    console.print(f"disabled console user {name}", highlight=False)


@app.command("passwd")
@handle_errors
def passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: PasswordStdin = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Set a new password (and enable the user); the user's open sessions end."""
    from autovision.console.auth import set_password

    ws = open_workspace(workspace)
    set_password(ws, name, _password(password_stdin))
    console.print(f"new password set for {name}", highlight=False)
