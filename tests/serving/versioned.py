"""Named models for server tests: tiny packages with different random weights (so each
version answers differently), registered as versions 1, 2, ... of one name."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from .conftest import LABELS

NAME = "pets"
SEEDS = (11, 12, 13)


@pytest.fixture(scope="session")
def version_packages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three packages with different weights (import it into a test module to use it)."""
    root = tmp_path_factory.mktemp("versions")
    return [build_package(root / f"seed{seed}", seed) for seed in SEEDS]


def build_package(path: Path, seed: int) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(seed)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        path, model, labels=LABELS, task="single-label", backbone="compact_cnn", preprocessing=spec
    )


def model_id(version: int) -> str:
    return f"m-{NAME}-v{version}"


def register_versions(ws, packages: Sequence[Path], into: Path) -> list[str]:
    """Copy each package under ``into`` (so a test may corrupt its copy) and register it as
    the next version of :data:`NAME`; returns the model ids (version 1 first)."""
    ids = []
    for i, package in enumerate(packages, start=1):
        copy = shutil.copytree(package, into / model_id(i))
        ws.register_model(
            model_id(i),
            dataset="toy",
            dataset_version=1,
            task="single-label",
            path=copy,
            name=NAME,
        )
        ids.append(model_id(i))
    return ids


def corrupt(ws, model: str) -> None:
    """Overwrite a registered package's ONNX file with garbage."""
    (ws.model_path(model) / "model.onnx").write_bytes(b"not an onnx model" * 10)
