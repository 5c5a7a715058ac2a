"""``autovision models``: the trained models of a workspace."""

from __future__ import annotations

from typing import Annotated, Any

import typer
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
    help="List and inspect trained models.", no_args_is_help=True, add_completion=False
)


_SHOWN = {
    *("model", "dataset", "dataset_version", "task", "status", "created_at", "path", "score"),
    *("validation", "trials", "stop_reason", "seconds", "base_model", "best", "run_id"),
}


def _score(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-"


@app.command("list")
@handle_errors
def list_models(workspace: WorkspaceOpt = None, json_output: JsonOpt = False) -> None:
    """Every model, oldest first."""
    ws = open_workspace(workspace)
    models = ws.list_models()
    if json_output:
        print_json(models)
        return
    if not models:
        console.print("no models yet: `autovision train DATASET` makes one")
        return
    table = Table()
    for col in ("model", "dataset", "task", "strategy", "validation", "trials", "stop"):
        table.add_column(col, overflow="fold")
    for m in models:
        best = m.get("best") or {}
        table.add_row(
            m["model"],
            f"{m['dataset']}@{m['dataset_version']}",
            m["task"],
            f"{best.get('backbone', '-')}/{best.get('mode', '-')}@{best.get('image_size', '-')}",
            _score(m.get("score")),
            str(m.get("trials", "-")),
            str(m.get("stop_reason", "-")),
        )
    console.print(table)


@app.command("show")
@handle_errors
def show(
    model: Annotated[str, typer.Argument(help="Model id (as `autovision train` printed).")],
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One model: dataset, validation metrics, chosen configuration and package path."""
    ws = open_workspace(workspace)
    info = ws.model(model)
    if json_output:
        print_json(info)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    for key in ("model", "dataset", "dataset_version", "task", "status", "created_at", "path"):
        table.add_row(key, str(info.get(key)))
    for k, v in (info.get("validation") or {}).items():
        table.add_row(f"validation {k}", _score(v) if isinstance(v, float) else str(v))
    for key in ("trials", "stop_reason", "seconds", "base_model"):
        if info.get(key) is not None:
            table.add_row(key, str(info[key]))
    best = info.get("best") or {}
    if best:
        table.add_row("best", ", ".join(f"{k}={v}" for k, v in best.items()))
    extra = {k: v for k, v in info.items() if k not in _SHOWN}
    for k, v in extra.items():
        table.add_row(k, str(v))
    console.print(table)


# ---- models compare: its own module (cli/compare.py) -----------------------------------
from autovision.cli.compare import register as _register_compare  # noqa: E402

_register_compare(app)
