from __future__ import annotations

import dataclasses

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


def test_a_subset_reuses_the_rows_another_cache_computed(workspace, make_dataset) -> None:
    """``train --exclude-issues`` trains on a subset in another order: no row is embedded
    twice (rows are matched by item id and image hash, for the same model and size only)."""
    items = make_dataset(counts=(6, 0, 0)).items
    assert len(items) == 12

    def compute(start: int, stop: int, base: list) -> np.ndarray:
        base.append((start, stop))
        return np.stack([np.full(4, ordered[i].id, np.float32) for i in range(start, stop)])

    ordered, calls = list(items), []
    full = cache.EmbeddingCache(workspace, ordered, SPEC, "model-x", 4)
    full.get(10, lambda a, b: compute(a, b, calls))  # the last 2 items never embedded
    subset = [items[i] for i in (9, 3, 0, 5, 11, 7)]  # item 11: not cached
    ordered, calls = subset, []
    part = cache.EmbeddingCache(workspace, subset, SPEC, "model-x", 4)
    assert part.reused == 4 and part.done == 4
    got = part.get(6, lambda a, b: compute(a, b, calls))
    assert calls == [(4, 6)]  # only from the first row no cache had
    assert got[:, 0].tolist() == [it.id for it in subset]
    # another model key, or another image under the same id: nothing reused
    assert cache.EmbeddingCache(workspace, subset, SPEC, "model-x|hflip", 4).reused == 0
    changed = [dataclasses.replace(subset[0], sha256="0" * 64), *subset[1:]]
    assert cache.EmbeddingCache(workspace, changed, SPEC, "model-x", 4).reused == 0
    other = Preprocessing(16, (127.5,) * 3, (127.5,) * 3)
    assert cache.EmbeddingCache(workspace, subset, other, "model-x", 4).reused == 0
