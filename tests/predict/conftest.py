"""A tiny model package (compact CNN, 3 labels, random weights) built once per session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

LABELS = ("red", "green", "blue")


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    root = tmp_path_factory.mktemp("models")
    return save_package(
        root / "m-test",
        model,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


@pytest.fixture(scope="session")
def multilabel_package_dir(package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network declared multi-label with per-label thresholds (only model.json
    changes: what is tested is how thresholds pick the labels)."""
    target = tmp_path_factory.mktemp("models") / "m-multi"
    shutil.copytree(package_dir, target)
    meta = json.loads((target / "model.json").read_text())
    meta.update(id="m-multi", task="multi-label", thresholds=[0.0, 0.5, 1.01])
    (target / "model.json").write_text(json.dumps(meta))
    return target


@pytest.fixture
def model_ws(workspace, package_dir: Path):
    """A workspace with the package registered as ``m-test``."""
    workspace.register_model(
        "m-test", dataset="colours", dataset_version=1, task="single-label", path=package_dir
    )
    return workspace


@pytest.fixture
def image_dir(tmp_path: Path, image_bytes) -> Callable[..., Path]:
    """``image_dir(n=6, broken=False)`` -> a folder of PNG/JPEG images in sub-folders; with
    ``broken``, also a truncated JPEG, a text file named .png and an empty file."""

    def build(n: int = 6, broken: bool = False, name: str = "images") -> Path:
        root = tmp_path / name
        for i in range(n):
            sub = root / LABELS[i % 3]
            sub.mkdir(parents=True, exist_ok=True)
            fmt = "JPEG" if i % 2 else "PNG"
            ext = "jpg" if fmt == "JPEG" else "png"
            (sub / f"{i:04d}.{ext}").write_bytes(image_bytes(i % 3, 32, i, fmt))
        if broken:
            good = image_bytes(0, 64, 99, "JPEG")
            (root / "broken").mkdir(parents=True, exist_ok=True)
            (root / "broken" / "truncated.jpg").write_bytes(good[: len(good) // 2])
            (root / "broken" / "text.png").write_text("this is not an image\n")
            (root / "broken" / "empty.jpg").write_bytes(b"")
            (root / "broken" / "notes.txt").write_text("not an image extension: skipped")
        return root

    return build
