"""``autovision models``: named model versions, their aliases, history and rollback.

A thin layer over :mod:`autovision.versions.store` (not the backbone registry of
``autovision.models.registry``, which lists architectures, not trained models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="Named model versions: list, show, card, aliases, history, rollback.",
    no_args_is_help=True,
    add_completion=False,
)
alias_app = typer.Typer(
    help="Point an alias (production, ...) at a version, or delete it.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(alias_app, name="alias")

ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why (kept in the history).", show_default=False)
]

_SHOWN = {
    *("model", "dataset", "dataset_version", "task", "status", "created_at", "path", "score"),
    *("validation", "trials", "stop_reason", "seconds", "base_model", "best", "run_id"),
    *("name", "version", "aliases", "test_metrics"),
}


def _score(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-"


def _test_score(metrics: dict[str, Any] | None, task: str = "single-label") -> str:
    """Test accuracy (macro F1 for multi-label), or ``-`` when not evaluated."""
    if not metrics:
        return "-"
    if task == "multi-label" and isinstance(metrics.get("macro_f1"), float):
        return f"{metrics['macro_f1']:.4f} F1"
    return _score(metrics.get("accuracy"))


def _age(iso: str, now: datetime | None = None) -> str:
    then = datetime.fromisoformat(iso)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    s = max(0.0, ((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def _json(mv: Any) -> dict[str, Any]:
    """The model's info, with ``id``, ``name``, ``version``, ``aliases`` and ``ref``."""
    return {**mv.info, **mv.to_dict()}


def _versions_table(versions: list[Any]) -> Table:
    table = Table()
    for col in ("version", "aliases", "model", "dataset", "val", "test", "age"):
        table.add_column(col, overflow="fold")
    for mv in versions:
        table.add_row(
            mv.ref,
            ", ".join(mv.aliases) or "-",
            mv.id,
            f"{mv.dataset}@{mv.dataset_version}",
            _score(mv.info.get("score")),
            _test_score(mv.test_metrics, mv.task),
            _age(mv.created_at),
        )
    return table


@app.command("list")
@handle_errors
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this model name.")] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Every model version (of NAME): aliases, dataset version, test accuracy and age."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    if name is not None:
        store.aliases(ws, name)  # a clear error naming the known names
    versions = store.list_versions(ws, name)
    if json_output:
        print_json([_json(mv) for mv in versions])
        return
    if not versions:
        console.print("no models yet: `autovision train DATASET` makes one")
        return
    console.print(_versions_table(versions))


@app.command("show")
@handle_errors
def show(
    ref: Annotated[
        str, typer.Argument(help="A model id, NAME (its default), NAME@VERSION or NAME@ALIAS.")
    ],
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """What REF names: version, aliases, dataset, metrics, configuration and package path."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    mv = store.resolve(ws, ref)
    info = mv.info
    if json_output:
        print_json(_json(mv))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("version", f"[bold]{mv.ref}[/]")
    table.add_row("aliases", ", ".join(mv.aliases) or "-")
    for key in ("model", "dataset", "dataset_version", "task", "status", "created_at", "path"):
        table.add_row(key, escape(str(info.get(key))))
    for k, v in (info.get("validation") or {}).items():
        table.add_row(f"validation {k}", _score(v) if isinstance(v, float) else str(v))
    for k in ("split", "images", "accuracy", "macro_f1", "log_loss", "ece"):
        v = (mv.test_metrics or {}).get(k)
        if v is not None:
            table.add_row(f"test {k}", _score(v) if isinstance(v, float) else str(v))
    for key in ("trials", "stop_reason", "seconds", "base_model"):
        if info.get(key) is not None:
            table.add_row(key, str(info[key]))
    best = info.get("best") or {}
    if best:
        table.add_row("best", ", ".join(f"{k}={v}" for k, v in best.items()))
    for k, v in info.items():
        if k not in _SHOWN:
            table.add_row(k, escape(str(v)))
    console.print(table)


@app.command("card")
@handle_errors
def card(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, NAME@ALIAS, NAME or a model id.")],
    fmt: Annotated[str, typer.Option("--format", help="html or md.")] = "md",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the card here (default: print it).", show_default=False
        ),  # fmt: skip
    ] = None,
    card_file: Annotated[
        Path | None,
        typer.Option(
            "--card-file",
            help="YAML/JSON with intended_use, limitations, ethical_considerations (stored).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The model card of REF, generated from the workspace's records (Mitchell et al. 2019)."""
    from autovision import cards

    ws = open_workspace(workspace)
    if card_file is not None:
        cards.set_card_info(ws, ref, cards.read_card_file(card_file))
    record = cards.build_card(ws, ref)
    if json_output:
        print_json(record)
        return
    text = cards.render_card(record, fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(
        f"Model card of {record['model']['ref']}: {output}", highlight=False, soft_wrap=True
    )


def _print_event(ev: Any, json_output: bool) -> None:
    if json_output:
        print_json(ev.to_dict())
        return
    where = f"{ev.name}@{ev.alias}"
    before = "nothing" if ev.from_version is None else f"version {ev.from_version}"
    after = "nothing" if ev.to_version is None else f"version {ev.to_version}"
    console.print(f"{where}: {before} -> {after} ({ev.kind})", highlight=False)


@alias_app.command("set")
@handle_errors
def alias_set(
    ref: Annotated[str, typer.Argument(help="The version: NAME@VERSION (or any model ref).")],
    alias: Annotated[str, typer.Argument(help="Alias name, e.g. production.")],
    reason: ReasonOpt = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Point ALIAS of the model at the version REF names (history keeps the move)."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    mv = store.resolve(ws, ref)
    _print_event(store.set_alias(ws, mv.name, mv.version, alias, reason=reason), json_output)


@alias_app.command("delete")
@handle_errors
def alias_delete(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to delete (not default).")],
    reason: ReasonOpt = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Delete ALIAS of NAME (`default` can only be moved); `rollback` restores it."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    _print_event(store.delete_alias(ws, name, alias, reason=reason), json_output)


@app.command("rollback")
@handle_errors
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias to move back, e.g. production.")],
    reason: ReasonOpt = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Move ALIAS back to the version it named before its last move (again: further back)."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    _print_event(store.rollback(ws, name, alias, reason=reason), json_output)


def _metric_cell(metrics: dict[str, Any] | None) -> str:
    return _score((metrics or {}).get("accuracy")) if metrics else "-"


@app.command("history")
@handle_errors
def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str | None, typer.Argument(help="Only this alias.")] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Every alias move of NAME, oldest first: time, who, from, to, reason, test metrics."""
    from autovision.versions import store

    ws = open_workspace(workspace)
    events = store.history(ws, name, alias)
    if json_output:
        print_json([e.to_dict() for e in events])
        return
    table = Table()
    for col in ("time", "alias", "kind", "move", "who", "reason", "test accuracy"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(
            e.time[:19].replace("T", " "),
            e.alias,
            e.kind,
            f"{_v(e.from_version)} -> {_v(e.to_version)}",
            escape(e.actor),
            escape(e.reason or ""),
            f"{_metric_cell(e.from_metrics)} -> {_metric_cell(e.to_metrics)}",
        )
    console.print(table)


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)


# ---- models compare: its own module (cli/compare.py) -----------------------------------
from autovision.cli.compare import register as _register_compare  # noqa: E402

_register_compare(app)


@app.command("set")
@handle_errors
def set_settings(
    name: Annotated[str, typer.Argument(help="Model name.")],
    review_below: Annotated[
        float | None,
        typer.Option(
            "--review-below",
            help="Queue single-label predictions whose top confidence is under this (0.5).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Settings of a named model (the review threshold of its predictions)."""
    from autovision.monitoring import review
    from autovision.versions import store

    ws = open_workspace(workspace)
    if name not in store.names(ws):
        from autovision.errors import ModelError

        raise ModelError(f"no model named {name!r}")
    if review_below is not None:
        review.set_review_below(ws, name, review_below)
    out = {"name": name, "review_below": review.review_below(ws, name)}
    if json_output:
        print_json(out)
    else:
        console.print(f"{escape(name)}: review below {out['review_below']:g}")
