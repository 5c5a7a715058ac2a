"""``autovision models compare A B``: two model versions from the shadow record, or on one
test split (see :mod:`autovision.versions.compare`)."""

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

BAR = 30  # characters of the longest histogram bar


def register(models_app: typer.Typer) -> None:
    models_app.command("compare")(compare)


@handle_errors
def compare(
    a: Annotated[str, typer.Argument(help="A: NAME@production, NAME@3, NAME or a model id.")],
    b: Annotated[str, typer.Argument(help="B: NAME@challenger, NAME@4, ... or a model id.")],
    since: Annotated[
        str | None,
        typer.Option(help="Only shadow records this recent (30m, 24h, 7d).", show_default=False),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Also measure both on this split (test) of the newer one's dataset version.",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Compare two versions from a shadow record (`serve A --shadow B`) or on --split.

    Agreement overall and per label, where they disagree (with request ids), confidence
    histograms; with --split, both versions' metrics on one split side by side."""
    from autovision.versions.compare import compare as shadow_compare
    from autovision.versions.compare import compare_on_split

    ws = open_workspace(workspace)
    result: dict[str, Any] = {"shadow": shadow_compare(ws, a, b, since=since)}
    if split is not None:
        result["split"] = compare_on_split(ws, a, b, split=split)
    if json_output:
        print_json(result)
        return
    _print_shadow(result["shadow"])
    if split is not None:
        _print_split(result["split"])


def _who(m: dict[str, Any]) -> str:
    version = f"{m['name']}@{m['version']}" if m.get("version") is not None else m["name"]
    return f"{m['ref']} ({version}, {m['id']})"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _print_shadow(r: dict[str, Any]) -> None:
    console.print(f"A: {_who(r['a'])}\nB: {_who(r['b'])}", highlight=False)
    since = f" since {r['since']}" if r["since"] else ""
    console.print(
        f"shadow record{since}: {r['n']} images in {r['requests']} requests; "
        f"agreement {_pct(r['agreement'])}",
        highlight=False,
    )
    for note in r.get("notes", []):
        console.print(note, highlight=False)
    if not r["n"]:
        return
    table = Table(title="agreement by A's label")
    for col in ("A label", "images", "B agrees", "agreement"):
        table.add_column(col, justify="left" if col == "A label" else "right")
    for label, c in r["per_label"].items():
        table.add_row(label, str(c["n"]), str(c["agreed"]), _pct(c["agreement"]))
    console.print(table)
    if r["disagreements"]:
        table = Table(title="disagreements")
        for col in ("A says", "B says", "images", "example request ids"):
            table.add_column(col, overflow="fold")
        for d in r["disagreements"]:
            table.add_row(d["a"], d["b"], str(d["count"]), ", ".join(d["examples"]))
        console.print(table)
    console.print("top-1 confidence (A | B)", highlight=False)
    for line in histogram_lines(r["confidence"]):
        console.print(line, highlight=False)


def histogram_lines(conf: dict[str, Any]) -> list[str]:
    """Text bars of both histograms, one line per bin, scaled to the largest count."""
    bins, ha, hb = conf["bins"], conf["a"], conf["b"]
    top = max([*ha, *hb, 1])
    lines = []
    for i, (ca, cb) in enumerate(zip(ha, hb, strict=True)):
        bar_a = "#" * round(BAR * ca / top)
        bar_b = "#" * round(BAR * cb / top)
        lines.append(f"{bins[i]:.1f}-{bins[i + 1]:.1f} {ca:>6} {bar_a:<{BAR}} | {cb:>6} {bar_b}")
    return lines


def _print_split(r: dict[str, Any]) -> None:
    table = Table(title=f"{r['split']} split of {r['dataset']}")
    for col in ("metric", "A", "B", "B - A"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    ma, mb = r["a"]["metrics"], r["b"]["metrics"]
    for key in ("images", "accuracy", "macro_f1", "micro_f1", "log_loss", "ece"):
        va, vb = ma.get(key), mb.get(key)
        diff = r["difference"].get(key)
        table.add_row(key, _fmt(va), _fmt(vb), "" if diff is None else f"{diff:+.4f}")
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "-" if v is None else str(v)
