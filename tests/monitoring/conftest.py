"""A workspace with a dataset (about 60 test images), a tiny model package registered on it, and
``records(images)``: prediction-log records of that model, as the server writes them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

LABELS = ("cat", "dog", "fox")
MODEL = "m-drift"


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(LABELS), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        tmp_path_factory.mktemp("drift") / MODEL,
        model,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


@pytest.fixture
def monitored_ws(workspace, image_folder, tiny_package: Path):
    from autovision.data.importer import import_dataset

    source = image_folder(LABELS, per_label=30)
    # workers=1: no fork after ONNX Runtime threads exist in this process (a fork can hang)
    import_dataset(workspace, "toy", source, split=(0.2, 0.1, 0.7), workers=1)
    path = workspace.models_dir / MODEL
    shutil.copytree(tiny_package, path)
    workspace.register_model(
        MODEL, dataset="toy", dataset_version=1, task="single-label", path=path, name="toy"
    )
    return workspace


@pytest.fixture
def records(tiny_package: Path) -> Callable[..., list[dict]]:
    from autovision.data.quality import analyze as input_stats
    from autovision.models.package import ModelPackage
    from autovision.models.preprocess import preprocess

    pkg = ModelPackage.load(tiny_package)

    def make(images, time: datetime | None = None) -> list[dict]:
        probs, emb = pkg.predict_with_embeddings(preprocess(images, pkg.preprocessing))
        when = (time or datetime.now(UTC)).isoformat()
        return [
            {
                "time": when,
                "model_id": MODEL,
                "probs": p.tolist(),
                "embedding": e.tolist(),
                "stats": input_stats(img),
            }
            for p, e, img in zip(probs, emb, images, strict=True)
        ]

    return make
