"""The demo: ``python -m autovision.demo --workspace DIR`` (what ``make demo`` runs).

Each step is a function so that later steps (train, evaluate, serve) slot in after
:func:`import_step`. The sample images live in ``DIR/../sample-digits`` and are built once.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autovision.demo", description=__doc__)
    parser.add_argument("--workspace", "-w", default=".demo/workspace", help="workspace folder")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
