"""Evaluation fixtures: a known 9-of-10 case with a fake package, and a tiny real model."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import Item

LABELS = ["a", "b", "c", "d"]

# The known case: true label, probabilities over a, b, c, d, metadata site.
# Image 4 (id 104) is the one mistake: true a, predicted b, a only 4th (top-3 miss).
KNOWN = [
    ("a", [0.93, 0.03, 0.02, 0.02], "north"),
    ("a", [0.83, 0.07, 0.05, 0.05], "north"),
    ("a", [0.73, 0.12, 0.10, 0.05], "south"),
    ("a", [0.03, 0.62, 0.20, 0.15], "south"),
    ("b", [0.04, 0.91, 0.03, 0.02], "north"),
    ("b", [0.18, 0.62, 0.12, 0.08], "north"),
    ("b", [0.25, 0.50, 0.15, 0.10], "south"),
    ("c", [0.02, 0.02, 0.88, 0.08], "north"),
    ("c", [0.04, 0.05, 0.86, 0.05], "north"),
    ("c", [0.30, 0.20, 0.42, 0.08], "south"),
]
KNOWN_IDS = list(range(101, 111))


def png(color: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def make_item(
    ws: Any, item_id: int, data: bytes, labels: Sequence[str], split: str, **meta
) -> Item:
    img = Image.open(io.BytesIO(data))
    return Item(
        id=item_id,
        sha256=ws.blobs.put(data),
        source=f"/src/{item_id}.png",
        labels=tuple(labels),
        split=split,
        width=img.width,
        height=img.height,
        format="PNG",
        metadata={k: str(v) for k, v in meta.items()},
    )


class FakePackage:
    """Quacks like ModelPackage: fixed probabilities chosen by the image's colour."""

    def __init__(self, table: dict[tuple[int, int, int], Sequence[float]], labels, task, th=None):
        self.table, self.labels, self.task, self.thresholds = table, list(labels), task, th

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.asarray(
            [self.table[tuple(np.asarray(im)[0, 0])] for im in images], dtype=np.float32
        )

    def decide(self, probs: np.ndarray) -> list[list[int]]:
        if self.task == "single-label":
            return [[int(i)] for i in probs.argmax(axis=1)]
        th = np.asarray(self.thresholds or [0.5] * len(self.labels))
        return [list(np.flatnonzero(row >= th)) for row in probs]


def _color(i: int) -> tuple[int, int, int]:
    return (10 + 20 * i, 100, 200)


@pytest.fixture
def known(workspace, monkeypatch, tmp_path: Path):
    """Workspace with dataset ``known@1`` and model ``m-known`` right on 9 of 10 test images."""
    items, table = [], {}
    for i, (label, probs, site) in enumerate(KNOWN):
        items.append(make_item(workspace, KNOWN_IDS[i], png(_color(i)), [label], "test", site=site))
        table[_color(i)] = probs
    for j, label in enumerate(LABELS):  # every label also in train
        items.append(make_item(workspace, 1 + j, png((j, 0, 0)), [label], "train"))
        table[(j, 0, 0)] = [0.7 if k == j else 0.1 for k in range(len(LABELS))]
    workspace.create_version("known", items, multi_label=False)
    model_dir = workspace.models_dir / "m-known"
    model_dir.mkdir(parents=True)
    workspace.register_model(
        "m-known", dataset="known", dataset_version=1, task="single-label", path=model_dir
    )
    packages = {str(model_dir): FakePackage(table, LABELS, "single-label")}

    def load(path):
        return packages[str(path)]

    monkeypatch.setattr("autovision.evaluation.predictions.load_package", load)
    workspace.fake_packages = packages  # tests may register more fakes
    return workspace


# ---- a tiny real model --------------------------------------------------------------

REAL_LABELS = ["cat", "dog", "fox"]
_BASE = [(200, 70, 60), (175, 85, 70), (50, 60, 220)]  # cat and dog look alike


def pattern(label: int, seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx + yy * label) // (4 + 2 * label)) % 2
    img = np.asarray(_BASE[label], np.float32)[None, None] * (0.6 + 0.4 * stripes[..., None])
    img = img * rng.uniform(0.55, 1.0) + rng.normal(0, 70, img.shape)  # hard enough to err
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """A compact CNN trained for a few steps; dataset ``shapes@1`` with 8 test images a label."""
    import torch

    from autovision.models.cnn import build  # the registered compact_cnn, without timm's import
    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.workspace import Workspace

    torch.manual_seed(0)
    ws = Workspace(tmp_path_factory.mktemp("real") / "ws")
    items, n = [], 1
    for li, label in enumerate(REAL_LABELS):
        for k in range(20):
            split = "train" if k < 12 else "test"
            meta = {"camera": "old" if k % 2 else "new"}
            items.append(make_item(ws, n, pattern(li, 1000 * li + k), [label], split, **meta))
            n += 1
    ds = ws.create_version("shapes", items, multi_label=False)
    spec = Preprocessing(input_size=16, mean=(127.5,) * 3, std=(127.5,) * 3)
    train = ds.split("train")
    x = torch.from_numpy(preprocess([ws.load_image(it) for it in train], spec))
    y = torch.tensor([REAL_LABELS.index(it.label) for it in train])
    model = build(num_classes=3, pretrained=False, drop_rate=0.0)
    model.train()
    for _ in range(6):  # plain SGD by hand: torch.optim would import torch._dynamo (slow)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= 0.2 * param.grad
    path = save_package(
        ws.models_dir / "m-real",
        model,
        labels=REAL_LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )
    ws.register_model("m-real", dataset="shapes", dataset_version=1, task="single-label", path=path)
    return ws
