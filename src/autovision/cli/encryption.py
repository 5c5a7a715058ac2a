"""``autovision encryption new-key|migrate``: keys for encryption at rest, and encrypting a
workspace written before one was set."""

from __future__ import annotations

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
    help="Encryption at rest (AES-GCM, key in AUTOVISION_ENCRYPTION_KEY or --key-file).",
    no_args_is_help=True,
)


@app.command("new-key")
@handle_errors
def new_key(json_: JsonOpt = False) -> None:
    """Print a new random key (base64); keep it outside the workspace."""
    from autovision.security.crypto import new_key, parse_key

    key = new_key()
    key_id = parse_key(key).id
    if json_:
        print_json({"key": key, "key_id": key_id})
        return
    print(key)


@app.command("migrate")
@handle_errors
def migrate(json_: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Encrypt the blobs, model packages and checkpoints written before the key was set."""
    from autovision.workspace.encryption import encrypt_workspace

    out = encrypt_workspace(open_workspace(workspace))
    if json_:
        print_json(out)
        return
    console.print(
        f"encrypted {out['blobs']} blobs and {out['model_files']} model files "
        f"with key id {out['key_id']}"
    )
