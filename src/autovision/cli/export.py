"""``autovision export``: a model's ONNX (fp32 or int8) or TorchScript file, its labels and
preprocessing spec, for use outside autovision."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from autovision.cli._common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err_console,
    handle_errors,
    open_workspace,
    print_json,
)


class ExportFormat(StrEnum):
    onnx = "onnx"
    onnx_int8 = "onnx-int8"
    torchscript = "torchscript"


class Quantization(StrEnum):
    static = "static"
    dynamic = "dynamic"


def register(app: typer.Typer) -> None:
    app.command("export")(export)


@handle_errors
def export(
    model: Annotated[
        str,
        typer.Argument(help="Model: NAME, NAME@VERSION, NAME@ALIAS, a model id or a package dir."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for the exported files.")
    ],
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="What to export.")
    ] = ExportFormat.onnx,
    quantization: Annotated[
        Quantization,
        typer.Option(
            help="int8 method: static (calibrated on training images, fast) or dynamic "
            "(no calibration, slow for convolutions)."
        ),
    ] = Quantization.static,
    calibration_size: Annotated[
        int, typer.Option(min=1, help="Training images used to calibrate static int8.")
    ] = 128,
    evaluate: Annotated[
        bool | None,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Measure accuracy on the model's test split (default: for onnx-int8 only).",
            show_default=False,
        ),
    ] = None,
    eval_limit: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate on at most this many test images.", show_default=False),
    ] = None,
    workspace: WorkspaceOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Export a model as ONNX, int8 ONNX or TorchScript, with labels.txt and preprocessing.json."""
    from autovision.models.export import export_model

    ws = open_workspace(workspace)

    def say(msg: str) -> None:
        if not json_output:
            err_console.print(f"[dim]{msg}[/]", highlight=False)

    result = export_model(
        ws,
        model,
        output,
        format=format.value,
        quantization=quantization.value,
        calibration_size=calibration_size,
        evaluate=evaluate,
        eval_limit=eval_limit,
        progress=say,
    )
    if json_output:
        print_json(result.to_dict())
        return
    if not (Path(model) / "model.json").is_file() and (mid := ws.model(model)["model"]) != model:
        model = f"{model} ({mid})"  # a version reference: say which model it named
    console.print(
        f"Exported [bold]{model}[/] as {result.format} to {result.output} "
        f"in {result.seconds:.1f}s:",
        highlight=False,
        soft_wrap=True,
    )
    for name in result.files:
        console.print(f"  {name}", highlight=False)
    if result.accuracy:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.accuracy.items())
        console.print(f"Test accuracy ({result.evaluated_images} images): {shown}", highlight=False)
        if "int8" in result.accuracy:
            drop = 100 * (result.accuracy["fp32"] - result.accuracy["int8"])
            console.print(f"int8 vs fp32: {-drop:+.2f} points", highlight=False)
    guard = result.guard
    if guard is not None and guard.agreement is not None:
        n_float = len(guard.float_nodes)
        kept = f", {n_float} sensitive nodes kept in float" if n_float else ""
        console.print(
            f"int8 top-1 agreement with fp32: {guard.agreement:.1%} of {guard.check_images} "
            f"validation images{kept}",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
