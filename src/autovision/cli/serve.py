"""``autovision serve``: the prediction server (see :mod:`autovision.serving`)."""

from __future__ import annotations

from typing import Annotated

import typer

from autovision.cli._common import WorkspaceOpt, console, fail, handle_errors, open_workspace


def register(app: typer.Typer) -> None:
    app.command("serve", no_args_is_help=False)(serve)


@handle_errors
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Model ids to serve (default: every model in the workspace).", show_default=False
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    ssl_certfile: Annotated[
        str | None, typer.Option("--ssl-certfile", help="TLS certificate (PEM).")
    ] = None,
    ssl_keyfile: Annotated[
        str | None, typer.Option("--ssl-keyfile", help="TLS private key (PEM).")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Allow a non-loopback address without any API key (anyone can call it).",
        ),
    ] = False,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Images per ORT call.")] = 32,
    max_batch_wait_ms: Annotated[
        float, typer.Option(min=0, help="Longest wait to fill a batch.")
    ] = 5.0,
    inference_workers: Annotated[
        int | None,
        typer.Option(
            min=1, help="Batches run at once under load (default: one per CPU core, 1 on GPU)."
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve models over REST (Vertex AI / TF Serving and KServe v2 protocols)."""
    from autovision.security.keys import has_keys
    from autovision.serving.app import serve as run
    from autovision.serving.settings import ServerSettings, check_startup

    ws = open_workspace(workspace)
    ids = list(models or [])
    for model_id in ids:
        ws.model(model_id)  # a clear error for an unknown id, before binding
    if not ids and not ws.list_models():
        fail("no models in the workspace: train one with `autovision train` first")
    settings = ServerSettings(
        host=host,
        port=port,
        workers=workers,
        workspace=str(ws.root),
        model_ids=ids,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        insecure_no_auth=insecure_no_auth,
        max_batch_size=max_batch_size,
        max_batch_wait_ms=max_batch_wait_ms,
        **({"inference_workers": inference_workers} if inference_workers else {}),
    )
    auth = has_keys(ws)
    check_startup(settings, auth_enabled=auth)
    scheme = "https" if ssl_certfile else "http"
    console.print(
        f"serving {', '.join(ids) or 'every model'} on {scheme}://{host}:{port} "
        f"(API keys {'required' if auth else 'not required: none exists'})",
        highlight=False,
    )
    run(settings, ws)
