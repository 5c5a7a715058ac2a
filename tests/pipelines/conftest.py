"""A CSV source of generated images on disk, pipeline files, and a tiny search space."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY_SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 2],
    "batch_size": 16,
}
LABELS = ("red", "green")
SPLITS = (("TRAIN", 12), ("VALIDATION", 4), ("TEST", 4))


@pytest.fixture(autouse=True)
def tiny_space(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A compact CNN at 16 px for 2 epochs, on one thread: seconds per trial."""
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(TINY_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    return TINY_SPACE


@pytest.fixture
def csv_source(tmp_path: Path, make_image) -> Callable[..., Path]:
    """``csv_source(extra=0)`` -> incoming/labels.csv naming images beside it (ML_USE set,
    so splits never depend on the import's draw); ``extra`` more training images of the
    first label (a changed CSV)."""
    root = tmp_path / "incoming"

    def build(extra: int = 0) -> Path:
        root.mkdir(exist_ok=True)
        rows, k = [], 0
        for li, label in enumerate(LABELS):
            for use, n in SPLITS:
                n += extra if (li == 0 and use == "TRAIN") else 0
                for i in range(n):
                    name = f"{label}-{use.lower()}-{i:03d}.png"
                    make_image(li, 16, 1000 * li + k).save(root / name)
                    rows.append(f"{use},{name},{label}")
                    k += 1
        csv = root / "labels.csv"
        csv.write_text("\n".join(rows) + "\n")
        return csv

    return build


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[..., Path]:
    """``write_pipeline(stages, name="leaves", **top)`` -> pipeline.yaml beside incoming/."""

    def write(stages: dict[str, Any], name: str = "leaves", **top: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        doc = {"name": name, "dataset": "leaves", **top, "stages": stages}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


FULL_STAGES: dict[str, Any] = {
    "import": {"source": "incoming/labels.csv"},
    "check": {"gate": {"max_conflicting_labels": 0, "min_images_per_label": 10}},
    "train": {"trials": 1},
    "evaluate": {"report": True, "gate": {"min_accuracy": 0.0, "min_recall_per_label": 0.0}},
    "compare": {"alias": "production", "min_gain": 0.0},
    "export": {"formats": ["onnx"]},
    "promote": {"alias": "production"},
}
