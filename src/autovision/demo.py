"""The demo: ``python -m autovision.demo --workspace DIR`` (what ``make demo`` runs).

The main job end to end on a generated sample: build scikit-learn's digits as PNG files,
import them, print the data report, train with a small budget, evaluate on the held-out test
split (HTML report), and answer a REST prediction request. Each step is a function. The sample
images live in ``DIR/../sample-digits`` and are built once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from autovision.data.dataset import DatasetVersion
from autovision.workspace import Workspace

DATASET = "digits"
SAMPLE_SIZE = 32
_DONE = ".complete"


def sample_dir(workspace: Path) -> Path:
    """Where the sample images go: next to the workspace, not inside it."""
    return workspace.resolve().parent / "sample-digits"


def build_sample_digits(out: Path, size: int = SAMPLE_SIZE) -> Path:
    """scikit-learn's 1,797 8x8 digits as ``size``x``size`` RGB PNGs, ``out/<digit>/*.png``.

    Skipped when a complete copy is already there.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    if (out / _DONE).exists():
        return out
    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = out / str(int(target))
        folder.mkdir(parents=True, exist_ok=True)
        gray = Image.fromarray((pixels * (255.0 / 16.0)).clip(0, 255).astype(np.uint8), "L")
        gray.resize((size, size), Image.Resampling.BILINEAR).convert("RGB").save(
            folder / f"{i:04d}.png"
        )
    (out / _DONE).write_text(f"{len(digits.images)} images\n")
    return out


def import_step(ws: Workspace, folder: Path, console: Console) -> DatasetVersion:
    """Import the sample as ``digits`` (reused when a version from the same folder exists)."""
    from autovision.cli.dataset import render_import
    from autovision.data.importer import import_dataset

    if DATASET in ws.dataset_names():
        ds = ws.dataset(DATASET)
        if ds.source == str(folder):
            console.print(f"Using the existing dataset [bold]{ds.ref}[/] ({len(ds.items)} images)")
            return ds
    with console.status("importing the sample digits..."):
        result = import_dataset(ws, DATASET, str(folder))
    render_import(result.to_dict(), console)
    return result.version


def report_step(ds: DatasetVersion, console: Console) -> dict:
    """Print the data report of the imported version; returns it."""
    from autovision.cli.dataset import render_report
    from autovision.data.report import dataset_report

    report = dataset_report(ds)
    render_report(report, console)
    return report


def train_step(ws: Workspace, ds: DatasetVersion, budget: str, console: Console) -> str:
    """Budgeted search on the sample; returns the model id."""
    from autovision.cli.train import ProgressView, _print_result
    from autovision.search.run import train

    with ProgressView(console) as view:
        result = train(ws, ds.ref, budget=budget, progress=view)
    _print_result(result.to_dict())
    return result.model


def evaluate_step(ws: Workspace, model_id: str, report: Path, console: Console) -> dict:
    """Test-split metrics and the HTML report."""
    from autovision.evaluation.api import evaluate

    with console.status("evaluating on the held-out test split..."):
        result = evaluate(ws, model_id, report=report)
    macro = result.get("macro", {})
    n = sum(sum(row) for row in result["confusion_matrix"]["matrix"])
    console.print(
        f"test accuracy [bold]{result['accuracy']:.4f}[/], macro F1 {macro.get('f1', 0):.4f}, "
        f"log loss {result['log_loss']:.4f} on {n} held-out test images"
    )
    console.print(f"HTML report: [bold]{result['report']}[/]")
    console.print(f"metrics JSON: {result['metrics_path']}")
    return result


def serve_step(ws: Workspace, model_id: str, image: Path, console: Console) -> dict:
    """One Vertex AI-style REST request against the prediction server (in process)."""
    import base64

    from fastapi.testclient import TestClient

    from autovision.serving.app import create_app

    body = {
        "instances": [{"content": base64.b64encode(image.read_bytes()).decode()}],
        "parameters": {"maxPredictions": 3},
    }
    # the in-process client calls as a local one would: Host 127.0.0.1, which the server allows
    with TestClient(create_app(ws, [model_id]), base_url="http://127.0.0.1") as client:
        response = client.post(f"/v1/models/{model_id}:predict", json=body)
    response.raise_for_status()
    answer = response.json()
    top = answer["predictions"][0]
    pairs = ", ".join(
        f"{n} {c:.3f}" for n, c in zip(top["displayNames"], top["confidences"], strict=True)
    )
    console.print(
        f"POST /v1/models/{model_id}:predict  ({image.parent.name}/{image.name}) -> {pairs}"
    )
    console.print(
        f"Serve it yourself: autovision serve {model_id} --workspace {ws.root}  (127.0.0.1:8080)"
    )
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autovision.demo", description=__doc__)
    parser.add_argument("--workspace", "-w", default=".demo/workspace", help="workspace folder")
    parser.add_argument("--budget", default="90s", help="training budget (e.g. 90s, 5m)")
    args = parser.parse_args(argv)
    console = Console()
    ws = Workspace(args.workspace)
    folder = sample_dir(ws.root)
    console.rule("1. sample data")
    build_sample_digits(folder)
    console.print(f"Sample images in {folder}")
    console.rule("2. import")
    ds = import_step(ws, folder, console)
    console.rule("3. data report")
    report_step(ds, console)
    console.rule("4. train")
    model_id = train_step(ws, ds, args.budget, console)
    console.rule("5. evaluate")
    evaluate_step(ws, model_id, ws.root.parent / "report.html", console)
    console.rule("6. serve")
    serve_step(ws, model_id, next(iter(sorted((folder / "7").glob("*.png")))), console)
    console.rule("7. web console")
    console.print(
        "Open the whole workflow in a browser (it prints a one-time login link):\n"
        f"  .venv/bin/autovision console --workspace {ws.root}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
