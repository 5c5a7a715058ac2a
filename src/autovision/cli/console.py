"""``autovision console``: the web console on this workspace (see :mod:`autovision.console`)."""

from __future__ import annotations

from typing import Annotated

import typer

from autovision.cli._common import WorkspaceOpt, console, fail, handle_errors, open_workspace


def register(app: typer.Typer) -> None:
    app.command("console", no_args_is_help=False)(console_cmd)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@handle_errors
def console_cmd(
    host: Annotated[str, typer.Option(help="Address to bind; loopback by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A Host name browsers use besides the bound address (repeatable).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="TLS certificate (PEM).", show_default=False)
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", help="TLS private key (PEM).", show_default=False)
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=1, help="Largest upload, in MB.")
    ] = 1024.0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Do not open a browser on the login link.")
    ] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve the web console. Prints a one-time login link (an admin session for you, valid
    10 minutes); others log in with `autovision users create` accounts. A non-loopback
    --host needs console users."""
    from autovision.console.app import create_app
    from autovision.console.auth import has_users
    from autovision.serving.settings import is_loopback

    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    ws = open_workspace(workspace)
    if not is_loopback(host) and not has_users(ws):
        fail(
            f"--host {host} is not a loopback address and no console users exist: create "
            "one first with `autovision users create NAME --role admin`"
        )
    secure = tls_cert is not None
    app = create_app(
        ws,
        host=host,
        port=port,
        allowed_hosts=tuple(allowed_host or ()),
        secure=secure,
        max_upload_mb=max_upload_mb,
    )
    scheme = "https" if secure else "http"
    url = f"{scheme}://{_url_host(host)}:{port}/?token={app.state.console.login_tokens.issue()}"
    console.print(f"autovision console on {scheme}://{_url_host(host)}:{port} ({ws.root})")
    console.print("Open this link to log in (once, within 10 minutes):")
    console.print(url, highlight=False, soft_wrap=True)
    if not no_browser:
        import contextlib
        import webbrowser

        with contextlib.suppress(Exception):  # no browser here: the link is printed
            webbrowser.open(url)
    _serve(app, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)


def _serve(app, *, host: str, port: int, tls_cert: str | None, tls_key: str | None) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,  # open event streams (Train page) must not hold a Ctrl-C
    )
