"""Tiny datasets built straight into a workspace (no importer), and a small search space."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import DatasetVersion, Item

TINY_SPACE = {
    "backbones": ["compact_cnn"],
    "sizes": {"compact_cnn": [16]},
    "epochs": [2, 3],
    "batch_size": 16,
}


@pytest.fixture
def tiny_space(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Restrict the search to a compact CNN at 16 px for 2-3 epochs (seconds per trial), on
    one thread (tiny operations gain nothing from more, and a shared machine stays fast)."""
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(TINY_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    return TINY_SPACE


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def make_dataset(workspace, make_image) -> Callable[..., DatasetVersion]:
    """``make_dataset(name, labels=("a", "b"), counts=(12, 4, 4), size=16, multi_label=False,
    seed=0, ws=None)`` (``ws`` defaults to the ``workspace`` fixture).

    ``counts`` are images per label in train / validation / test. Multi-label items carry
    their label plus the next one on every third image. Every image is unique.
    """

    def build(
        name: str = "tiny",
        labels: Sequence[str] = ("a", "b"),
        counts: tuple[int, int, int] = (12, 4, 4),
        size: int = 16,
        multi_label: bool = False,
        seed: int = 0,
        ws=None,
    ) -> DatasetVersion:
        ws = ws or workspace
        total = len(labels) * sum(counts)
        first = ws.reserve_item_ids(name, total)
        items, k = [], 0
        for li, lab in enumerate(labels):
            for split, n in zip(("train", "validation", "test"), counts, strict=True):
                for i in range(n):
                    img = np.asarray(make_image(li, size, seed * 100_000 + k))
                    sha = ws.blobs.put(_png(img))
                    labs: tuple[str, ...] = (lab,)
                    if multi_label and i % 3 == 0:
                        labs = tuple(sorted({lab, labels[(li + 1) % len(labels)]}))
                    items.append(
                        Item(
                            id=first + k,
                            sha256=sha,
                            source=f"{lab}/{split}-{i:03d}.png",
                            labels=labs,
                            split=split,
                            width=size,
                            height=size,
                            format="PNG",
                        )
                    )
                    k += 1
        return ws.create_version(name, items, multi_label=multi_label, source="generated")

    return build


@pytest.fixture
def assert_no_pickle() -> Callable[[Path], None]:
    """``assert_no_pickle(folder)``: every file is JSON, ONNX, safetensors, a plain .npy or
    the model card's text, and loads with a loader that cannot run code."""

    def check(folder: Path) -> None:
        import onnx
        from safetensors.numpy import load_file

        files = [f for f in folder.rglob("*") if f.is_file()]
        assert files, f"nothing in {folder}"
        for f in files:
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".onnx":
                onnx.load(str(f))
            elif f.suffix == ".safetensors":
                load_file(str(f))
            elif f.suffix == ".npy":
                np.load(f, allow_pickle=False)
            elif f.name in ("model_card.md", "model_card.html"):  # the model card, text
                f.read_text(encoding="utf-8")
            else:
                raise AssertionError(f"unexpected file {f}")

    return check
