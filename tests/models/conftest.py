"""A tiny, really trained model on two separable generated classes, and helpers to package it."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from autovision.models.preprocess import Preprocessing, preprocess
from autovision.models.registry import create_model, get_backbone_cfg

TOY_LABELS = ("horizontal", "vertical")
TOY_SIZE = 16  # small images keep training and export fast


def toy_image(label_index: int, seed: int, size: int = TOY_SIZE) -> Image.Image:
    """Class 0: warm horizontal stripes; class 1: cool vertical stripes; noisy, random phase."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    period = int(rng.integers(4, 8))
    phase = int(rng.integers(0, period))
    coord = yy if label_index == 0 else xx
    stripes = ((coord + phase) // (period // 2)) % 2
    base = np.array([(200, 120, 60), (60, 120, 200)][label_index], dtype=np.float32)
    img = base * (0.55 + 0.45 * stripes[..., None]) + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def toy_samples(per_class: int, seed: int) -> list[tuple[Image.Image, str]]:
    return [
        (toy_image(li, seed * 100_000 + li * 1000 + i), lab)
        for i in range(per_class)
        for li, lab in enumerate(TOY_LABELS)
    ]


def toy_spec(backbone: str = "compact_cnn", size: int = TOY_SIZE) -> Preprocessing:
    cfg = get_backbone_cfg(backbone)
    return Preprocessing(input_size=size, mean=cfg.mean, std=cfg.std)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny inputs gain nothing from threads, and on a shared machine OpenMP threads that
    wait for a busy core make every op slow (10x seen here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def toy() -> SimpleNamespace:
    """Toy helpers: ``labels``, ``size``, ``image(i, seed)``, ``samples(n, seed)``, ``spec()``."""
    return SimpleNamespace(
        labels=TOY_LABELS, size=TOY_SIZE, image=toy_image, samples=toy_samples, spec=toy_spec
    )


@pytest.fixture(scope="session")
def trained_toy() -> torch.nn.Module:
    """compact_cnn trained for a few steps on the two toy classes (test accuracy ~1.0)."""
    torch.manual_seed(0)
    spec = toy_spec()
    samples = toy_samples(32, seed=1)
    x = torch.from_numpy(preprocess([im for im, _ in samples], spec))
    y = torch.tensor([TOY_LABELS.index(lab) for _, lab in samples])
    model = create_model("compact_cnn", num_classes=len(TOY_LABELS), pretrained=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see _one_torch_thread (a session fixture runs outside it)
    try:
        for _ in range(20):
            idx = torch.randperm(len(x), generator=g)[:16]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture
def toy_workspace(
    workspace, tmp_path: Path, trained_toy
) -> Callable[..., tuple[object, str, Path]]:
    """``toy_workspace(meta_dataset=True)`` -> (workspace, model id, package dir): a dataset
    ``toy@1`` (train/validation/test) and a registered package of the trained toy model."""
    from autovision.data.dataset import Item
    from autovision.models.package import save_package

    def build(meta_dataset: bool = True, model_id: str = "m-toy") -> tuple[object, str, Path]:
        items = []
        for split, per_class, seed in (("train", 24, 11), ("validation", 6, 12), ("test", 20, 13)):
            for img, lab in toy_samples(per_class, seed):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                sha = workspace.blobs.put(buf.getvalue())
                items.append(
                    Item(
                        id=len(items) + 1,
                        sha256=sha,
                        source=f"generated/{split}/{len(items)}.png",
                        labels=(lab,),
                        split=split,
                        width=TOY_SIZE,
                        height=TOY_SIZE,
                        format="PNG",
                    )
                )
        ds = workspace.create_version("toy", items, multi_label=False, source="generated")
        meta = {}
        if meta_dataset:
            meta["dataset"] = {
                "name": ds.name,
                "version": ds.version,
                "ref": ds.ref,
                "content_hash": ds.content_hash,
            }
        pkg_dir = save_package(
            workspace.models_dir / model_id,
            trained_toy,
            labels=TOY_LABELS,
            task="single-label",
            backbone="compact_cnn",
            preprocessing=toy_spec(),
            meta=meta,
        )
        workspace.register_model(
            model_id,
            dataset=ds.name,
            dataset_version=ds.version,
            task="single-label",
            path=pkg_dir,
        )
        return workspace, model_id, pkg_dir

    return build
