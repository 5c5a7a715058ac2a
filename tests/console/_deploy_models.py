"""Tiny model packages (compact CNN, random weights, a few labels) registered as versions
of a named model, for the deploy page's tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

XSS = "<img src=x onerror=alert(1)>"
LABELS = ("healthy", "rust", XSS)


def build_package(
    path: Path, seed: int, labels: Sequence[str] = LABELS, sharpen: float = 400.0
) -> Path:
    """Random weights; the classifier scaled by ``sharpen`` so the answers are confident
    (and differ between images), as a trained model's would be."""
    import torch

    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing
    from autovision.models.registry import create_model, get_backbone_cfg

    torch.manual_seed(seed)
    cfg = get_backbone_cfg("compact_cnn")
    model = create_model("compact_cnn", num_classes=len(labels), pretrained=False)
    with torch.no_grad():
        model.classifier.weight.mul_(sharpen)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    return save_package(
        path,
        model,
        labels=list(labels),
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )


def register(ws, packages: Sequence[Path], name: str = "leaves", accuracies=()) -> list[str]:
    """Register each package (in place: they are read only) as the next version of
    ``name``; returns the model ids, version 1 first."""
    ids = []
    for i, package in enumerate(packages, start=1):
        model_id = f"m-{name}-{i}"
        ws.register_model(
            model_id,
            dataset=name,
            dataset_version=i,
            task="single-label",
            path=package,
            name=name,
        )
        if i <= len(accuracies):
            ws.update_model_info(model_id, test_metrics={"accuracy": accuracies[i - 1]})
        ids.append(model_id)
    return ids
