"""``autovision serve``: the prediction server (see :mod:`autovision.serving`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from autovision.cli._common import WorkspaceOpt, console, fail, handle_errors, open_workspace


class AuthPolicy(StrEnum):
    """`--auth`: the API key policy (see ServerSettings.auth)."""

    required = "required"
    auto = "auto"
    off = "off"


def _given(**options: object) -> dict[str, object]:
    """The options set on the command line (unset ones leave ``AUTOVISION_SERVE_*``)."""
    return {k: v for k, v in options.items() if v not in (None, [])}


def _describe(target, poll_s: float) -> str:
    """One line per served entry: its URL name, what it serves now, what it follows."""
    now = target.model_id if target.version is None else f"{target.name}@{target.version}"
    line = f"/v1/models/{target.key}:predict -> {now} ({target.model_id})"
    if target.follows is not None:
        name, alias = target.follows
        line += f", following {name}@{alias} (checked every {poll_s:g} s)"
    return line


def _every(text: str | None) -> float | None:
    """``--monitor-every``: a duration (15m, 1h, 90s) or 0 / off."""
    from autovision.search.budget import parse_duration

    if text is None:
        return None
    return 0.0 if text.strip().lower() in ("0", "off", "never") else parse_duration(text)


def register(app: typer.Typer) -> None:
    app.command("serve", no_args_is_help=False)(serve)


@handle_errors
def serve(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to serve: NAME@production, NAME (its default alias), NAME@3 or a model "
            "id (default: every model in the workspace). An alias is followed: when it "
            "moves, the server switches to the new version without a restart.",
            show_default=False,
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
    auth: Annotated[
        AuthPolicy | None,
        typer.Option(
            help="API keys: 'required' on every prediction and admin route; 'auto' (the "
            "default) once any key exists; 'off' for prediction routes (admin routes always "
            "need a key).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="A Host name clients use besides the bound address (repeatable; '*': any).",
            show_default=False,
        ),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            metavar="ORIGIN",
            help="A web origin (https://console.example:443) allowed to POST/DELETE here "
            "(repeatable).",
            show_default=False,
        ),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option(help="Serve /admin/* on this port only (not on --port).", show_default=False),
    ] = None,
    admin_host: Annotated[
        str | None,
        typer.Option(help="Address of the admin port (default: --host).", show_default=False),
    ] = None,
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
    shadow: Annotated[
        str | None,
        typer.Option(
            help="A challenger (NAME@VERSION, NAME@ALIAS or model id) also run on every "
            "request off the response path; both predictions are recorded for "
            "`autovision models compare`.",
            show_default=False,
        ),
    ] = None,
    shadow_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of requests sent to --shadow (default 1)."),
    ] = None,
    alias_poll_s: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="How often a served alias is checked for a move, in seconds [default: 2].",
            show_default=False,
        ),
    ] = None,
    monitor_every: Annotated[
        str | None,
        typer.Option(
            help="How often drift is recomputed for the autovision_drift gauges (15m, 1h; 0: "
            "off) [default: 15m].",
            show_default=False,
        ),
    ] = None,
    log_rate: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Share of requests logged [default: 1]."),
    ] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not record predictions.")] = False,
    no_store_images: Annotated[
        bool,
        typer.Option("--no-store-images", help="Log predictions without their images."),
    ] = False,
    retention: Annotated[
        str | None,
        typer.Option(
            help="Purge prediction log records older than this (daily) [default: 30d].",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve models over REST (Vertex AI / TF Serving and KServe v2 protocols)."""
    from autovision.security.keys import has_keys
    from autovision.serving.app import serve as run
    from autovision.serving.settings import ServerSettings, check_startup
    from autovision.serving.state import keyed, resolve_target

    ws = open_workspace(workspace)
    ids = list(models or [])
    targets = keyed([resolve_target(ws, ref) for ref in ids])  # a clear error before binding
    challenger = ws.model(shadow) if shadow is not None else None  # the same for it
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
        **_given(
            inference_workers=inference_workers,
            auth=auth.value if auth else None,
            allowed_hosts=allowed_host,
            allowed_origins=allowed_origin,
            admin_port=admin_port,
            admin_host=admin_host,
            shadow=shadow,
            shadow_rate=shadow_rate,
            alias_poll_s=alias_poll_s,
            monitor_every_s=_every(monitor_every),
            log_rate=log_rate,
            retention=retention,
        ),
        log_predictions=not no_log,
        log_store_images=not no_store_images,
    )
    if settings.retention:
        from autovision.monitoring.log import LogError, parse_age

        try:
            parse_age(settings.retention)
        except LogError as exc:
            fail(f"--retention: {exc}")
    keys_exist = has_keys(ws)
    check_startup(settings, auth_enabled=keys_exist)
    scheme = "https" if ssl_certfile else "http"
    if settings.auth == "off":
        policy = "API keys off for predictions"
    elif keys_exist or settings.auth == "required":
        policy = "API keys required"
    else:
        policy = "API keys not required: none exists; admin routes disabled until one does"
    admin = ""
    if settings.admin_port is not None:
        admin = f"; admin on {scheme}://{settings.admin_host or host}:{settings.admin_port}"
    console.print(
        f"serving {', '.join(ids) or 'every model'} on {scheme}://{host}:{port} ({policy}{admin})",
        highlight=False,
    )
    for t in targets:
        console.print(f"  {_describe(t, settings.alias_poll_s)}", highlight=False)
    if challenger is not None and shadow is not None:
        from autovision.serving.shadow import pinned

        name = challenger.get("name") or challenger.get("dataset")
        line = pinned(shadow, challenger["model"], name, challenger.get("version"))
        console.print(f"  {line}", highlight=False)
    run(settings, ws)
