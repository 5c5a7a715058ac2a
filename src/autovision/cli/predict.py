"""``autovision predict``: batch prediction over images, or test-set predictions of a model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

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


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)


@handle_errors
def predict(
    model: Annotated[
        str,
        typer.Argument(help="Model: NAME, NAME@VERSION, NAME@ALIAS, a model id or a package dir."),
    ],
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Images: folders (recursive), globs, CSV or JSONL lists, files or URLs.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the JSON lines: a file, or an s3:// folder or file (parts).",
        ),
    ] = ...,  # type: ignore[assignment]
    errors: Annotated[
        str | None,
        typer.Option(help="Errors file (default OUTPUT.errors.jsonl).", show_default=False),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip images already in OUTPUT or ERRORS.")
    ] = False,
    split: Annotated[
        str | None,
        typer.Option(help="Write predictions of a dataset split (test) instead of INPUTs."),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset NAME or NAME@N for --split (default: the model's own version)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference batch.")] = 32,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Decoding threads (default: CPU count).")
    ] = None,
    confidence_threshold: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Leave out labels under this confidence."),
    ] = None,
    max_predictions: Annotated[
        int | None, typer.Option(min=1, help="At most this many labels per image.")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on this Ray cluster (HOST:PORT, ray://..., auto) with Ray Data.",
            show_default=False,
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            min=1, help="With --ray: ONNX Runtime actors (default: as many as the CPUs hold)."
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Predict images in bulk (one JSON line per image), or a split with --split.

    Single-label: every label, by confidence. Multi-label: the labels over the model's thresholds.
    Unreadable images go to the errors file with a reason; the run goes on.
    --resume skips the images OUTPUT and ERRORS already hold.
    --ray ADDRESS runs it on a Ray cluster (Ray Data decodes, an actor pool runs the model).
    """
    ws = open_workspace(workspace)
    if split is not None:
        if inputs:
            fail("give either INPUT... or --split, not both")
        _split_predictions(ws, _model_id(ws, model), Path(output), split, dataset, json_output)
        return
    if dataset is not None:
        fail("--dataset goes with --split")
    if not inputs:
        fail("nothing to predict: give INPUT... (folders, globs, CSV/JSONL, files) or --split")
    if ray_address is None and actors is not None:
        fail("--actors goes with --ray")
    if ray_address is not None and workers is not None:
        fail("--workers sets local decoding threads; with --ray use --actors")
    model = _model_id(ws, model)
    options: dict[str, Any] = {
        "errors": errors,
        "resume": resume,
        "batch_size": batch_size,
        "workspace": ws,
        "confidence_threshold": confidence_threshold,
        "max_predictions": max_predictions,
    }
    if ray_address is not None:
        from autovision.predict.raydata import predict_batch_ray as run

        options.update(address=ray_address, actors=actors)
    else:
        from autovision.predict import predict_batch as run

        options["workers"] = workers
    with _progress_bar(enabled=not json_output) as on_progress, _interrupted(output):
        result = run(model, inputs, output, progress=on_progress, **options)
    if json_output:
        print_json({"model": model, **result.to_dict()})
        return
    failed = ""
    if result.failed:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(result.failures.items()))
        failed = f", [yellow]{result.failed} failed[/] ({reasons})"
    skipped = f", {result.skipped} already done" if result.skipped else ""
    console.print(
        f"Predicted [bold]{result.predicted}[/] images{failed}{skipped} in "
        f"{result.seconds:.1f} s ({result.images_per_second:.1f} images/s)",
        highlight=False,
    )
    console.print(f"Output: {result.output}", highlight=False, soft_wrap=True)
    if result.failed:
        console.print(f"Errors: {result.errors}", highlight=False, soft_wrap=True)


def _model_id(ws: Any, model: str) -> str:
    """The concrete id behind ``NAME``/``NAME@N``/``NAME@ALIAS`` (resolved once, so an alias
    moving meanwhile cannot mix versions); a package folder stays as given."""
    if (Path(model) / "model.json").is_file():
        return model
    return ws.model(model)["model"]


def _split_predictions(
    ws: Any, model: str, output: Path, split: str, dataset: str | None, json_output: bool
) -> None:
    from autovision.evaluation.predictions import write_split_predictions

    result = write_split_predictions(ws, model, output, split=split, dataset=dataset)
    info = result if isinstance(result, dict) else {"rows": result}
    if json_output:
        print_json({"model": model, "split": split, "output": str(output), **info})
        return
    rows = f"{info['rows']} " if isinstance(info.get("rows"), int) else ""
    console.print(f"Wrote {rows}{split} predictions of {model} to {output}", highlight=False)


@contextlib.contextmanager
def _interrupted(output: str) -> Iterator[None]:
    """Ctrl-C: say how to finish the run instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: what is in {output} is complete; run the same command with "
            "--resume to finish",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None


@contextlib.contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A rich progress bar on stderr, fed by ``predict_batch``'s progress callback."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn())
    times = (TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, *times, console=err_console, transient=True) as bar:
        task = bar.add_task("predict", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
