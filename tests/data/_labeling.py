"""Helpers of the labeling tests (data and console): a dataset with unlabeled images, a
stub model registered on it (model.json only, its probabilities patched in), and a tiny
real package (an untrained compact CNN: fast, deterministic)."""

from __future__ import annotations

import json
from pathlib import Path

from autovision.data.dataset import Item


def make_dataset(
    ws,
    image_bytes,
    *,
    name="leaves",
    labeled=4,
    unlabeled=6,
    labels=("healthy", "rust"),
    multi=False,
    label_text=None,
):
    """``labeled`` images alternating over ``labels`` (ids 1..), then ``unlabeled`` ones."""
    items = []
    for i in range(labeled + unlabeled):
        data = image_bytes(i % 3, 24, 900 + i)
        sha = ws.blobs.put(data)
        lab = (labels[i % len(labels)],) if i < labeled else ()
        name_of = label_text or "img"
        items.append(
            Item(
                id=i + 1,
                sha256=sha,
                source=f"{name_of}-{i + 1}.png",
                labels=lab,
                split=("train", "validation", "test")[i % 3],
                width=24,
                height=24,
                format="PNG",
            )
        )
    return ws.create_version(name, items, multi_label=multi, source="test")


def register_stub(
    ws,
    tmp_path: Path,
    dataset: str,
    labels,
    *,
    name=None,
    alias="production",
    task="single-label",
    model_id="m-stub",
    thresholds=None,
):
    from autovision.versions.store import set_alias

    path = tmp_path / model_id
    path.mkdir()
    (path / "model.json").write_text(
        json.dumps({"labels": list(labels), "task": task, "thresholds": thresholds})
    )
    mv = ws.register_model(
        model_id, dataset=dataset, dataset_version=1, task=task, path=path, name=name or dataset
    )
    if alias:
        set_alias(ws, mv.name, mv.version, alias)
    return mv


def tiny_package(path: Path, labels) -> Path:
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(0)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(labels), pretrained=False)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        path,
        model,
        labels=tuple(labels),
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )
