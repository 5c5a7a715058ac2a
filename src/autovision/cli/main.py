"""The ``autovision`` app: assembles the command groups."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="autovision",
    help="Self-hosted AutoML for image classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, attribute, group name or None to add its commands at the top level)
_GROUPS = [
    ("autovision.cli.dataset", "app", "dataset"),
    ("autovision.cli.train", "register", None),
    ("autovision.cli.worker", "register", None),
    ("autovision.cli.retrain", "register", None),
    ("autovision.cli.models", "app", "models"),
    ("autovision.cli.evaluate", "register", None),
    ("autovision.cli.predict", "register", None),
    ("autovision.cli.export", "register", None),
    ("autovision.cli.serve", "register", None),
    ("autovision.cli.keys", "app", "keys"),
    ("autovision.cli.encryption", "app", "encryption"),
    ("autovision.cli.audit", "app", "audit"),
    ("autovision.cli.usage", "register", None),
    ("autovision.cli.monitor", "register", None),
    ("autovision.cli.logs", "app", "logs"),
    ("autovision.cli.review", "app", "review"),
    ("autovision.cli.console", "register", None),
    ("autovision.cli.users", "app", "users"),
    ("autovision.cli.jobs", "app", "jobs"),
    ("autovision.cli.workspace", "app", "workspace"),
    ("autovision.cli.pipeline", "app", "pipeline"),
]


def _assemble() -> None:
    for module_name, attr, group in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # command group not built yet
            raise
        obj = getattr(module, attr)
        if group is None:
            obj(app)
        else:
            app.add_typer(obj, name=group)


@app.callback()
def _root(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="File holding the encryption-at-rest key (as AUTOVISION_ENCRYPTION_KEY_FILE).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Self-hosted AutoML for image classification."""
    if key_file is not None:
        from autovision.cli._common import fail
        from autovision.errors import EncryptionError
        from autovision.security import crypto

        # through the environment, so worker processes and the server see the same key
        os.environ.pop(crypto.ENV_KEY, None)
        os.environ[crypto.ENV_KEY_FILE] = str(key_file.expanduser().resolve())
        try:
            crypto.configured_key()
        except EncryptionError as exc:
            fail(str(exc))


_assemble()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
