from __future__ import annotations

import numpy as np
import pytest

from autovision.models.preprocess import Preprocessing, resize_image
from autovision.search import cache

SPEC = Preprocessing(12, (127.5,) * 3, (127.5,) * 3)


@pytest.mark.parametrize("parallel", [False, True])
def test_pixels_are_decoded_once_and_match_serving(
    workspace, make_dataset, monkeypatch, parallel
) -> None:
    ds = make_dataset(labels=("a", "b"), counts=(4, 1, 1), size=20)
    items = ds.split("train")
    if parallel:
        monkeypatch.setattr(cache, "PARALLEL_MIN_ITEMS", 2)
        monkeypatch.setattr(cache, "_CHUNK", 3)
    px = cache.load_pixels(workspace, items, SPEC)
    assert px.shape == (8, 12, 12, 3) and px.dtype == np.uint8
    for row, it in zip(px, items, strict=True):
        assert np.array_equal(row, resize_image(workspace.load_image(it), SPEC))
    monkeypatch.setattr(type(workspace), "image_bytes", lambda *a: pytest.fail("decoded again"))
    again = cache.load_pixels(workspace, items, SPEC)
    assert np.array_equal(again, px)
    assert [p.name for p in (workspace.cache_dir / "images").iterdir()] == [
        cache.pixels_path(workspace, items, SPEC).name
    ]


def test_embeddings_fill_incrementally(workspace, make_dataset) -> None:
    items = make_dataset(counts=(5, 0, 0)).items
    calls = []

    def compute(start: int, stop: int) -> np.ndarray:
        calls.append((start, stop))
        return np.arange(start, stop, dtype=np.float32)[:, None].repeat(4, 1)

    emb = cache.EmbeddingCache(workspace, items, SPEC, "model-x", 4)
    assert emb.get(3, compute, batch=2)[:, 0].tolist() == [0, 1, 2]
    emb2 = cache.EmbeddingCache(workspace, items, SPEC, "model-x", 4)
    assert emb2.done == 3
    assert emb2.get(10, compute, batch=4)[:, 0].tolist() == list(range(10))
    assert calls == [(0, 2), (2, 3), (3, 7), (7, 10)]
    with pytest.raises(TimeoutError):
        cache.EmbeddingCache(workspace, items, SPEC, "model-y", 4).get(5, compute, deadline=0)
