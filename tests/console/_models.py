"""A tiny trained model for the model pages: dataset ``shapes@1`` (three labels, one of them
a label that is HTML) and two versions of the named model ``shapes`` trained for a few
steps by hand (no search: seconds, not minutes)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autovision.data.dataset import Item

XSS = "<img src=x onerror=alert(1)>"
LABELS = ["cat", "dog", XSS]
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


def _train(ws: Any, ds: Any, model_id: str, steps: int, seed: int, lr: float = 0.2) -> None:
    import torch

    from autovision.models.cnn import build
    from autovision.models.package import save_package
    from autovision.models.preprocess import Preprocessing, preprocess

    torch.manual_seed(seed)
    spec = Preprocessing(input_size=16, mean=(127.5,) * 3, std=(127.5,) * 3)
    train = ds.split("train")
    x = torch.from_numpy(preprocess([ws.load_image(it) for it in train], spec))
    y = torch.tensor([LABELS.index(it.label) for it in train])
    model = build(num_classes=len(LABELS), pretrained=False, drop_rate=0.0)
    model.train()
    for _ in range(steps):  # plain SGD by hand: torch.optim would import torch._dynamo (slow)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for param in model.parameters():
                param -= lr * param.grad
    path = save_package(
        ws.models_dir / model_id,
        model,
        labels=LABELS,
        task="single-label",
        backbone="compact_cnn",
        preprocessing=spec,
    )
    ws.register_model(model_id, dataset="shapes", dataset_version=1, task="single-label", path=path)


def add_trained_models(ws: Any, per_label: int = 16, test_per_label: int = 8) -> None:
    """``shapes@1`` (``per_label`` images a label, ``test_per_label`` of them in test) and
    the model versions ``shapes@1`` (barely trained: flat confidences, 62% right) and
    ``shapes@2`` (88% right, confidences from 0.36 to 0.59, two off-diagonal cells)."""
    items, n = [], 1
    for li, label in enumerate(LABELS):
        for k in range(per_label):
            data = pattern(li, 1000 * li + k)
            img = Image.open(io.BytesIO(data))
            items.append(
                Item(
                    id=n,
                    sha256=ws.blobs.put(data),
                    source=f"{label}/{k:03d}.png",
                    labels=(label,),
                    split="train" if k >= test_per_label else "test",
                    width=img.width,
                    height=img.height,
                    format="PNG",
                )
            )
            n += 1
    ds = ws.create_version("shapes", items, multi_label=False)
    _train(ws, ds, "m-shapes-1", steps=6, seed=0, lr=0.2)
    _train(ws, ds, "m-shapes-2", steps=24, seed=0, lr=0.05)


_template: list[Path] = []


def trained_workspace(tmp_path_factory: Any, dest: Path) -> Any:
    """A copy at ``dest`` of a workspace with :func:`add_trained_models` (trained once per
    test session: the packages stay in the template, the copy's database names them)."""
    from autovision.workspace import Workspace

    if not _template:
        root = tmp_path_factory.mktemp("models-template") / "ws"
        add_trained_models(Workspace(root))
        _template.append(root)
    shutil.copytree(_template[0], dest, ignore=shutil.ignore_patterns("cache"))
    return Workspace(dest)
