"""Tiny datasets with planted label errors, and the search space the checks embed with."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from autovision.data.dataset import DatasetVersion, Item

# EfficientNet-Lite0 linear heads at 32 px: what the checks and `train` then embed with
LITE_SPACE = {
    "backbones": ["efficientnet_lite0"],
    "modes": ["linear"],
    "sizes": {"efficientnet_lite0": [32]},
}
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 220), (230, 200, 40)]


@pytest.fixture(autouse=True)
def lite_space(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("AUTOVISION_SEARCH_SPACE", json.dumps(LITE_SPACE))
    monkeypatch.setenv("AUTOVISION_THREADS", "1")
    return LITE_SPACE


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _solid(label: int, size: int, seed: int) -> np.ndarray:
    """A class colour with mild noise: classes any embedding separates."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), COLOURS[label], np.float32) + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _halves(left: int, right: int, size: int, seed: int) -> np.ndarray:
    """Left half in one class colour, right half in another, with noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    img[:, : size // 2] = COLOURS[left]
    img[:, size // 2 :] = COLOURS[right]
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Planted:
    """A generated dataset and its planted label errors: ``{id: true label(s)}`` per split."""

    ds: DatasetVersion
    flips: dict[int, object] = field(default_factory=dict)
    test_flips: dict[int, object] = field(default_factory=dict)


@pytest.fixture
def planted(workspace, make_image) -> Callable[..., Planted]:
    """``planted(name, labels, counts=(24, 8, 8), flips=(2, 1, 1), unlabeled=0)``: images of
    the conftest's colour-and-stripe classes; ``flips`` images per split (train, validation,
    test) carry the next label instead of their own."""

    def build(
        name: str = "flips",
        labels: Sequence[str] = ("red", "green", "blue"),
        counts: tuple[int, int, int] = (24, 8, 8),
        flips: tuple[int, int, int] = (2, 1, 1),
        unlabeled: int = 0,
        size: int = 32,
    ) -> Planted:
        total = len(labels) * sum(counts) + unlabeled
        first = workspace.reserve_item_ids(name, total)
        items, out, k = [], Planted(ds=None), 0  # type: ignore[arg-type]
        for si, (split, n) in enumerate(zip(("train", "validation", "test"), counts, strict=True)):
            for li, lab in enumerate(labels):
                for i in range(n):
                    sha = workspace.blobs.put(_png(np.asarray(make_image(li, size, 7919 * k))))
                    given = lab
                    # the first `flips[si]` images of a split, one per label in turn
                    if i == 0 and li < flips[si]:
                        given = labels[(li + 1) % len(labels)]
                        (out.flips if split != "test" else out.test_flips)[first + k] = lab
                    items.append(
                        Item(
                            first + k,
                            sha,
                            f"{lab}/{split}-{i:03d}.png",
                            (given,),
                            split,
                            size,
                            size,
                            "PNG",
                        )  # fmt: skip
                    )
                    k += 1
        for i in range(unlabeled):
            sha = workspace.blobs.put(_png(_solid(i % len(labels), size, 31 * i + 5)))
            items.append(Item(first + k, sha, f"new/{i}.png", (), "unassigned", size, size, "PNG"))
            k += 1
        out.ds = workspace.create_version(name, items, multi_label=False, source="generated")
        return out

    return build


@pytest.fixture
def planted_multi(workspace) -> Callable[..., Planted]:
    """A multi-label set: each image shows two colour halves and carries both colours' labels
    (one label when they are the same); the planted errors carry another pair."""

    def build(name: str = "multi", per_pair: int = 5, size: int = 32) -> Planted:
        labels = ("red", "green", "blue")
        pairs = [(a, b) for a in range(3) for b in range(a, 3)]
        first = workspace.reserve_item_ids(name, len(pairs) * per_pair * 2)
        items, out, k = [], Planted(ds=None), 0  # type: ignore[arg-type]
        for split, n in (("train", per_pair), ("validation", max(2, per_pair // 2))):
            for a, b in pairs:
                for i in range(n):
                    sha = workspace.blobs.put(_png(_halves(a, b, size, 104729 * k + 3)))
                    true = tuple(sorted({labels[a], labels[b]}))
                    given = true
                    if split == "train" and i == 0 and (a, b) in ((0, 0), (1, 2)):
                        given = ("blue",) if (a, b) == (0, 0) else ("red",)
                        out.flips[first + k] = list(true)
                    items.append(
                        Item(
                            first + k,
                            sha,
                            f"{a}{b}/{split}-{i}.png",
                            given,
                            split,
                            size,
                            size,
                            "PNG",
                        )  # fmt: skip
                    )
                    k += 1
        out.ds = workspace.create_version(name, items, multi_label=True, source="generated")
        return out

    return build
