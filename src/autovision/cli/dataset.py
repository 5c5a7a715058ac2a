"""``autovision dataset``: import, list, show, exclude, relabel and export datasets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    fail,
    handle_errors,
    open_workspace,
    print_json,
)

app = typer.Typer(
    help="Import, inspect, clean, split and export datasets.",
    no_args_is_help=True,
    add_completion=False,
)

SPLIT_NAMES = ("train", "validation", "test")


class SourceFormat(StrEnum):
    folder = "folder"
    csv = "csv"
    jsonl = "jsonl"


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    folder = "folder"


# ---- rendering ---------------------------------------------------------------------------


def _problems_table(problems: list[dict[str, Any]], limit: int) -> Table:
    table = Table(title=f"{len(problems)} problem(s)", title_justify="left")
    for col in ("reason", "source", "line", "message"):
        table.add_column(col, overflow="fold")
    for p in problems[:limit]:
        line = "" if p.get("line") is None else str(p["line"])
        table.add_row(p["reason"], escape(str(p["source"])), line, escape(p["message"]))
    if len(problems) > limit:
        table.caption = f"... and {len(problems) - limit} more (--json lists them all)"
    return table


def render_import(result: dict[str, Any], out: Console = console, limit: int = 20) -> None:
    """The readable summary of an import."""
    splits = result["splits"]
    out.print(
        f"[bold green]Imported[/] {result['images']} images into "
        f"[bold]{result['dataset']}@{result['version']}[/]: {len(result['labels'])} labels; "
        + ", ".join(f"{s} {splits.get(s, 0)}" for s in SPLIT_NAMES),
        highlight=False,
    )
    prev = result.get("previous")
    if prev:
        moved = prev["reassigned_by_ml_use"]
        out.print(
            f"{prev['kept_splits']} images already in @{prev['version']} kept their split"
            + (f"; {moved} moved by the file's ML_USE" if moved else ""),
            highlight=False,
        )
    if result["problems"]:
        out.print(_problems_table(result["problems"], limit))
    counts = result.get("checks_summary")
    if counts is not None:
        from autovision.data.report import summary_line

        out.print(f"Checks: {escape(summary_line(counts, result['dataset']))}", highlight=False)


def _short(source: Any, width: int = 32) -> str:
    """A long path as ``.../folder/file`` (the JSON report keeps the full path)."""
    text = str(source)
    if len(text) <= width:
        return text
    parts = text.replace("\\", "/").rstrip("/").split("/")
    return ".../" + "/".join(parts[-2:])


def _group_text(group: dict[str, Any]) -> str:
    images = group.get("images", [])
    parts = [
        f"{m.get('id')} {_short(m.get('source', ''))} [{','.join(m.get('labels', []) or ['-'])}"
        f"/{m.get('split', '?')}]"
        for m in images
    ]
    kind = f"({group['kind']}) " if group.get("kind") else ""
    return escape(kind + "; ".join(parts))


def render_report(report: dict[str, Any], out: Console = console, limit: int = 5) -> None:
    """Readable tables of a :func:`autovision.data.report.dataset_report`."""
    kind = "multi-label" if report.get("multi_label") else "single-label"
    out.print(
        f"[bold]{report['dataset']}@{report['version']}[/]: {report['images']} images, "
        f"{len(report.get('labels', {}))} labels, {kind}",
        highlight=False,
    )
    per_split = report.get("label_split_counts") or {}
    table = Table(title="Images per label and split", title_justify="left")
    table.add_column("label")
    for s in SPLIT_NAMES:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for label, count in report.get("labels", {}).items():
        row = per_split.get(label, {})
        table.add_row(escape(label), *(str(row.get(s, "")) for s in SPLIT_NAMES), str(count))
    splits = report.get("splits", {})
    table.add_section()
    table.add_row(
        "all images", *(str(splits.get(s, 0)) for s in SPLIT_NAMES), str(report["images"])
    )
    out.print(table)
    ratio = report.get("imbalance_ratio")
    if ratio is not None:
        out.print(f"Imbalance ratio (largest / smallest label): {ratio:.2f}")
    for w in report.get("label_warnings", []):
        colour = "red" if w.get("level") == "error" else "yellow"
        out.print(f"[{colour}]{w.get('level', 'warning')}[/]: {escape(str(w.get('message', w)))}")

    issues = report.get("issues") or {}
    if issues:
        itable = Table(title="Issues", title_justify="left")
        itable.add_column("issue")
        itable.add_column("count", justify="right")
        itable.add_column(escape(f"first {limit}: id source [labels/split]"), overflow="fold")
        for name in ("exact_duplicates", "near_duplicates", "conflicting_labels", "split_leakage"):
            groups = issues.get(name, [])
            shown = "\n".join(
                _group_text(g) + (escape(f" (by {g['method']})") if g.get("method") else "")
                for g in groups[:limit]
            )
            itable.add_row(name, f"{len(groups)} groups", shown)
        for flag, entries in (issues.get("quality") or {}).items():
            shown = "\n".join(
                escape(f"{e.get('id')} {_short(e.get('source', ''))} ({e.get('value', '')})")
                for e in entries[:limit]
            )
            itable.add_row(f"quality: {flag}", f"{len(entries)} images", shown)
        for name in ("label_issues", "label_issues_test", "outliers"):
            if name in issues:
                itable.add_row(
                    name, f"{len(issues[name])} images", "(below)" if issues[name] else ""
                )
        out.print(itable)
    _render_checks(report, out, limit)
    problems = report.get("problems") or []
    if problems:
        out.print(_problems_table(problems, limit))


def _labels_text(value: Any) -> str:
    return ",".join(value) if isinstance(value, list | tuple) else str(value or "-")


def _render_checks(report: dict[str, Any], out: Console, limit: int) -> None:
    """The model-based checks (``autovision dataset check``): tables once computed, else a
    hint of the command that computes them."""
    issues = report.get("issues") or {}
    checks = report.get("checks") or {}
    ref = f"{report.get('dataset')}@{report.get('version')}"
    titles = {
        "label_issues": "Likely label errors (train and validation), worst first",
        "label_issues_test": "Likely label errors in the test split (they distort evaluation)",
    }
    for name, title in titles.items():
        entries = issues.get(name) or []
        if not entries:
            continue
        table = Table(title=title, title_justify="left")
        for col in ("id", "source", "split", "label -> suggested"):
            table.add_column(col, overflow="fold")
        table.add_column("score", justify="right")
        for e in entries[:limit]:
            given = _labels_text(e.get("label", e.get("labels")))
            table.add_row(
                str(e.get("id")),
                escape(_short(e.get("source", ""))),
                str(e.get("split", "")),
                escape(f"{given} -> {_labels_text(e.get('suggested'))}"),
                f"{float(e.get('score', 0.0)):.3f}",
            )
        if len(entries) > limit:
            table.caption = f"{len(entries) - limit} more (--limit, --json)"
        out.print(table)
    outliers = issues.get("outliers") or []
    if outliers:
        info = checks.get("outliers") or {}
        table = Table(
            title="Outliers (far from every other image), worst first", title_justify="left"
        )
        for col in ("id", "source", "split", "labels"):
            table.add_column(col, overflow="fold")
        table.add_column("score", justify="right")
        for e in outliers[:limit]:
            table.add_row(
                str(e.get("id")),
                escape(_short(e.get("source", ""))),
                str(e.get("split", "")),
                escape(_labels_text(e.get("labels"))),
                f"{float(e.get('score', 0.0)):.3f}",
            )
        notes = ["score: mean cosine distance to the nearest images"]
        if info.get("threshold") is not None:
            notes[0] += f", flagged over {info['threshold']:.3f}"
        if len(outliers) > limit:
            notes.append(f"{len(outliers) - limit} more (--limit, --json)")
        table.caption = "; ".join(notes)
        out.print(table)
    for kind, info in checks.items():
        out.print(
            escape(
                f"{kind}: checked {info.get('computed_at') or '?'} ({info.get('method') or '?'})"
            ),
            style="dim",
            highlight=False,
        )
    missing = [k for k in ("label_issues", "outliers", "content_duplicates") if k not in checks]
    if missing:
        out.print(
            escape(f"Not checked yet: {', '.join(missing)}; run `autovision dataset check {ref}`"),
            style="dim",
            highlight=False,
        )


# ---- commands ----------------------------------------------------------------------------


@app.command("import")
@handle_errors
def import_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name (a new version if it exists).")],
    source: Annotated[
        str, typer.Argument(help="Folder, CSV or JSONL file (a path or URL), or a zip/tar.")
    ],
    fmt: Annotated[
        SourceFormat | None,
        typer.Option("--format", help="Source format (detected when not given)."),
    ] = None,
    multi_label: Annotated[
        bool | None,
        typer.Option(
            "--multi-label/--single-label",
            help="Force multi- or single-label (detected from the rows when not given).",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="TRAIN/VALIDATION/TEST fractions.")
    ] = "80/10/10",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split.")] = 0,
    strict: Annotated[
        bool, typer.Option("--strict", help="Any problem: no new version, exit 1.")
    ] = False,
    allow_root: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-root",
            metavar="DIR",
            help="A folder rows may name besides the CSV/JSONL file's own (repeatable).",
            show_default=False,
        ),
    ] = None,
    allow_urls: Annotated[
        bool,
        typer.Option(
            "--allow-urls",
            help="Read http(s) and object-store URLs named in rows (never private addresses).",
        ),
    ] = False,
    max_file_mb: Annotated[
        float, typer.Option("--max-file-mb", help="Largest image file read, in MB.")
    ] = 30.0,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import images from a folder per label, a CSV or a JSONL file, or a .zip/.tar(.gz) of
    one; a folder holding dataset.csv/dataset.jsonl (an export) imports as that file. Rows
    may only name files inside the file's folder (or an --allow-root); remote URLs need
    --allow-urls; only regular files up to --max-file-mb are read. Ends with a line of what
    the duplicate, conflict, leakage and quality checks found."""
    from autovision.data.importer import ImportFailed, import_dataset

    ws = open_workspace(workspace)
    kwargs: dict[str, Any] = dict(
        format=fmt.value if fmt else None,
        multi_label=multi_label,
        split=split,
        seed=seed,
        strict=strict,
        allow_roots=allow_root or [],
        allow_urls=allow_urls,
        max_file_mb=max_file_mb,
    )
    try:
        if json_out:
            result = import_dataset(ws, name, source, **kwargs)
        else:
            with Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            ) as bar:
                task = bar.add_task("import", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = import_dataset(ws, name, source, progress=progress, **kwargs)
    except ImportFailed as exc:
        if json_out:
            print_json(
                {
                    "dataset": name,
                    "version": None,
                    "images": 0,
                    "labels": {},
                    "splits": {s: 0 for s in SPLIT_NAMES},
                    "problems": exc.problems,
                    "error": str(exc),
                }
            )
            raise typer.Exit(1) from None
        if exc.problems:
            err_console.print(_problems_table(exc.problems, 20))
        fail(str(exc))
        return
    if json_out:
        print_json(result.to_dict())
    else:
        render_import(result.to_dict())


@app.command("list")
@handle_errors
def list_cmd(json_out: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List the datasets of the workspace (latest versions)."""
    rows = open_workspace(workspace).list_datasets()
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("No datasets yet: autovision dataset import NAME SOURCE")
        return
    table = Table("dataset", "latest", "images", "type", "created")
    for r in rows:
        kind = "multi-label" if r["multi_label"] else "single-label"
        table.add_row(
            r["dataset"], str(r["latest_version"]), str(r["images"]), kind, r["created_at"][:19]
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[@N]", help="Dataset (latest) or version.")],
    limit: Annotated[int, typer.Option("--limit", help="Entries shown per issue.")] = 5,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The data report: counts per label and split, warnings, duplicates, leakage, quality,
    and the label issues, outliers and content duplicates of `dataset check` once computed."""
    from autovision.checks.store import load_checks
    from autovision.data.report import dataset_report
    from autovision.monitoring.feedback import feedback_count

    ws = open_workspace(workspace)
    ds = ws.dataset(ref)
    report = dataset_report(ds, checks=load_checks(ws, ds))
    report["feedback_items"] = feedback_count(ds)
    if json_out:
        print_json(report)
    else:
        render_report(report, limit=limit)
        if report["feedback_items"]:
            console.print(f"{report['feedback_items']} item(s) came from reviewed predictions")


@app.command("add-feedback")
@handle_errors
def add_feedback_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    from_name: Annotated[
        str | None,
        typer.Option("--from", help="Model name (default: every model of this dataset)."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of the new images.")] = "train",
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """A new version with the reviewed images of the prediction log added, with lineage."""
    from autovision.monitoring.review import add_feedback

    out = add_feedback(open_workspace(workspace), name, from_name=from_name, split=split)
    if json_out:
        print_json(out)
        return
    if not out["added"]:
        console.print(f"nothing new to add; {name}@{out['version']} unchanged")
    else:
        console.print(f"{name}@{out['version']}: added {out['added']} reviewed image(s) to {split}")
    console.print(
        f"left out: {out['duplicates']} already in the dataset, {out['no_image']} without "
        f"a stored image, {out['unreadable']} unreadable"
    )


def _edit_summary(new: Any, old: Any, key: str) -> dict[str, Any]:
    changed = new.version != old.version
    return {
        "dataset": new.name,
        "version": new.version,
        "parent_version": old.version if changed else new.parent_version,
        "changed": changed,
        "images": len(new.items),
        key: sorted(new.params.get(key, [])) if changed else [],
        "note": new.note if changed else "",
    }


def _print_edit(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(summary)
    elif summary["changed"]:
        console.print(
            f"[bold green]{summary['dataset']}@{summary['version']}[/] "
            f"(from @{summary['parent_version']}): {summary['note']}; "
            f"{summary['images']} images",
            highlight=False,
        )
    else:
        console.print(
            f"Nothing changed; {summary['dataset']}@{summary['version']} stays the latest.",
            highlight=False,
        )


@app.command("exclude")
@handle_errors
def exclude_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[@N]", help="Dataset to edit.")],
    ids: Annotated[
        list[str] | None,
        typer.Option("--ids", help="Image ids (repeat or comma-separate).", show_default=False),
    ] = None,
    issues: Annotated[
        str | None,
        typer.Option(
            "--issues",
            help="Issues to clean, e.g. exact_duplicates,near_duplicates,conflicting_labels,"
            "split_leakage,quality or a quality flag (blurry, dark...).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make a new version without some images (by id or by issue)."""
    from autovision.data.edit import exclude

    if (ids is None) == (issues is None):
        fail("give either --ids or --issues", code=2)
    id_list: list[int] | None = None
    if ids is not None:
        parts = [p.strip() for v in ids for p in v.split(",") if p.strip()]
        bad = [p for p in parts if not p.isdigit()]
        if bad or not parts:
            fail(f"--ids expects image ids, got {', '.join(bad) or 'nothing'}", code=2)
        id_list = [int(p) for p in parts]
    ws = open_workspace(workspace)
    old = ws.dataset(ref)
    new = exclude(ws, old.ref, ids=id_list, issues=issues)
    _print_edit(_edit_summary(new, old, "excluded"), json_out)


@app.command("relabel")
@handle_errors
def relabel_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[@N]", help="Dataset to edit.")],
    file: Annotated[
        str | None,
        typer.Option("--file", help="CSV of id,label[,label...] rows.", show_default=False),
    ] = None,
    accept_suggestions: Annotated[
        bool,
        typer.Option(
            "--accept-suggestions",
            help="Take the labels `dataset check --label-issues` suggested.",
        ),
    ] = False,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            help="With --accept-suggestions: only suggestions whose probability is at least "
            "this (0..1, default 0.5).",
            show_default=False,
        ),
    ] = None,
    include_test: Annotated[
        bool,
        typer.Option(
            "--include-test", help="With --accept-suggestions: also relabel test-split images."
        ),
    ] = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Make a new version with labels changed from a CSV file or from the label-issue
    suggestions."""
    from autovision.data.edit import relabel, relabel_suggestions

    if (file is None) == (not accept_suggestions):
        fail("give either --file or --accept-suggestions", code=2)
    if not accept_suggestions and (min_score is not None or include_test):
        fail("--min-score and --include-test go with --accept-suggestions", code=2)
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        fail(f"--min-score must be between 0 and 1, got {min_score:g}", code=2)
    ws = open_workspace(workspace)
    old = ws.dataset(ref)
    if accept_suggestions:
        new = relabel_suggestions(
            ws,
            old.ref,
            min_score=0.5 if min_score is None else min_score,
            include_test=include_test,
        )
    else:
        new = relabel(ws, old.ref, file)
    summary = _edit_summary(new, old, "relabeled")
    if accept_suggestions:
        summary["suggestions"] = new.params.get("suggestions", []) if summary["changed"] else []
    _print_edit(summary, json_out)


@app.command("export")
@handle_errors
def export_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[@N]", help="Dataset to export.")],
    out: Annotated[str, typer.Argument(help="New or empty folder to write.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Export layout.")] = (
        ExportFormat.csv
    ),
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Export a version: csv or jsonl (images, labels, splits, metadata) or folder (a folder
    per label, no splits)."""
    from autovision.data.export import export_dataset

    summary = export_dataset(open_workspace(workspace), ref, out, format=fmt.value)
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"Exported {summary['images']} images of {summary['dataset']}@{summary['version']} "
            f"to {summary['path']} ({summary['format']})",
            highlight=False,
        )


# ---- dataset check -------------------------------------------------------------------------


def _label_text(label: Any) -> str:
    if isinstance(label, list | tuple):
        return ",".join(str(v) for v in label) or "-"
    return "-" if label is None else str(label)


def label_issues_table(entries: list[dict[str, Any]], title: str, limit: int) -> Table:
    """Label issues as rows ``id, source, split, label -> suggested, score``, worst first."""
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("source", overflow="fold")
    table.add_column("split")
    table.add_column("label -> suggested", overflow="fold")
    table.add_column("score", justify="right")
    for e in entries[:limit]:
        table.add_row(
            str(e.get("id")),
            escape(_short(e.get("source", ""))),
            str(e.get("split", "")),
            escape(f"{_label_text(e.get('label'))} -> {_label_text(e.get('suggested'))}"),
            f"{float(e.get('score', 0.0)):.3f}",
        )
    if len(entries) > limit:
        table.caption = f"... and {len(entries) - limit} more (--json lists them all)"
    return table


def _outliers_table(entries: list[dict[str, Any]], title: str, limit: int) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("id", "source", "split", "label", "score"):
        table.add_column(col, justify="right" if col in ("id", "score") else "left")
    for e in entries[:limit]:
        table.add_row(
            str(e.get("id")),
            escape(_short(e.get("source", ""))),
            str(e.get("split", "")),
            escape(_label_text(e.get("label"))),
            f"{float(e.get('score', 0.0)):.3f}",
        )
    if len(entries) > limit:
        table.caption = f"... and {len(entries) - limit} more (--json lists them all)"
    return table


def render_check(result: dict[str, Any], out: Console = console, limit: int = 10) -> None:
    """Readable tables of a :func:`autovision.checks.run.check_dataset` result."""
    emb = result.get("embedding") or {}
    out.print(
        f"[bold]{result['dataset']}@{result['version']}[/]: checked in {result['seconds']:.1f}s; "
        f"embeddings {emb.get('model')} at {emb.get('image_size')} px "
        f"({emb.get('computed', 0)} computed, {emb.get('cached', 0)} cached)",
        highlight=False,
    )
    checks = result.get("checks") or {}
    if "label_issues" in checks:
        found = checks["label_issues"]
        issues, test = result.get("label_issues") or [], result.get("label_issues_test") or []
        if found.get("skipped"):
            out.print(f"label issues: not checked ({found['skipped']})", highlight=False)
        else:
            out.print(
                label_issues_table(
                    issues,
                    f"{len(issues)} likely label error(s) in train/validation "
                    f"(of {found.get('checked', 0)} checked)",
                    limit,
                )
            )
            out.print(
                label_issues_table(
                    test,
                    f"{len(test)} likely label error(s) in the test split "
                    f"(of {found.get('checked_test', 0)} checked)",
                    limit,
                )
            )
    if "outliers" in checks:
        found = checks["outliers"]
        flagged = result.get("outliers") or []
        title = f"{len(flagged)} outlier(s) (of {found.get('checked', 0)} images)"
        out.print(_outliers_table(flagged, title, limit))
    content = result.get("content_duplicates")
    if content:
        pairs = content.get("pairs") or []
        table = Table(
            title=f"{len(pairs)} near-duplicate pair(s) by content "
            f"(cosine similarity >= {content.get('threshold')})",
            title_justify="left",
        )
        for col in ("id", "id", "similarity"):
            table.add_column(col, justify="right")
        for a, b, sim, *_ in pairs[:limit]:
            table.add_row(str(a), str(b), f"{float(sim):.3f}")
        if len(pairs) > limit:
            table.caption = f"... and {len(pairs) - limit} more (--json lists them all)"
        out.print(table)


_STAGE_TEXT = {
    "embedding": "embedding images",
    "embedding_flipped": "embedding mirrored images",
    "near_duplicates": "near duplicates",
    "label_issues": "label issues",
    "outliers": "outliers",
}


@app.command("check")
@handle_errors
def check_cmd(
    ref: Annotated[str, typer.Argument(metavar="NAME[@N]", help="Dataset (latest) or version.")],
    label_issues: Annotated[
        bool, typer.Option("--label-issues", help="Likely label errors (cleanlab).")
    ] = False,
    outliers: Annotated[
        bool, typer.Option("--outliers", help="Images that belong to none of the classes.")
    ] = False,
    near_duplicates: Annotated[
        bool,
        typer.Option("--near-duplicates", help="Near duplicates by content (crops, flips...)."),
    ] = False,
    folds: Annotated[
        int, typer.Option("--folds", help="Cross-validation folds of the label check.", min=2)
    ] = 5,
    budget: Annotated[
        str | None,
        typer.Option(
            "--budget", help="Time limit, e.g. 2m (embedding stops there).", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows shown per table.")] = 10,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Model-based checks (none selected: all three): label issues, outliers and near
    duplicates by content, from frozen pretrained embeddings (cached, and reused by
    `train`). The results are stored: `dataset show` lists them, `dataset exclude --issues`
    and `train --exclude-issues` use them."""
    from autovision.checks.run import check_dataset

    if not (label_issues or outliers or near_duplicates):
        label_issues = outliers = near_duplicates = True
    ws = open_workspace(workspace)
    kwargs: dict[str, Any] = dict(
        label_issues=label_issues,
        outliers=outliers,
        near_duplicates=near_duplicates,
        folds=folds,
        budget=budget,
    )
    if json_out:
        result = check_dataset(ws, ref, **kwargs)
        print_json(result)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=_STAGE_TEXT.get(stage, stage), completed=done, total=total)

        result = check_dataset(ws, ref, progress=progress, **kwargs)
    render_check(result, limit=limit)
