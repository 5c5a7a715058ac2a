"""Check embeddings: every item, the search's own cache (``train`` embeds nothing again),
mirrored images apart."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.checks.embeddings import dataset_embeddings


def test_every_item_is_embedded_once_and_then_read_from_the_cache(workspace, planted) -> None:
    p = planted(flips=(0, 0, 0), unlabeled=2)
    seen: list[tuple[int, int]] = []
    first = dataset_embeddings(workspace, p.ds, progress=lambda d, n: seen.append((d, n)))
    assert [it.id for it in first.items] == [it.id for it in p.ds.items]
    assert first.emb.shape == (len(p.ds.items), 1280) and first.emb.dtype == np.float32
    assert first.computed == len(p.ds.items) and first.image_size == 32
    assert seen[-1] == (len(p.ds.items), len(p.ds.items))
    again = dataset_embeddings(workspace, p.ds)
    assert again.computed == 0 and again.cached == len(p.ds.items)
    np.testing.assert_array_equal(again.emb, first.emb)
    mirrored = dataset_embeddings(workspace, p.ds, flip=True)
    assert mirrored.key == first.key + "|hflip" and mirrored.computed == len(p.ds.items)
    assert not np.allclose(mirrored.emb, first.emb)


def test_a_deadline_stops_embedding_and_keeps_what_was_computed(workspace, planted) -> None:
    import time

    p = planted(flips=(0, 0, 0))
    with pytest.raises(TimeoutError):
        dataset_embeddings(workspace, p.ds, deadline=time.monotonic() - 1)
    assert dataset_embeddings(workspace, p.ds).computed == len(p.ds.items)


def test_a_version_that_cannot_be_trained_is_embedded_all_the_same(workspace, planted) -> None:
    p = planted(labels=("red",), flips=(0, 0, 0), counts=(4, 0, 2))
    emb = dataset_embeddings(workspace, p.ds)
    assert emb.emb.shape[0] == len(p.ds.items) == 6


@pytest.mark.slow
def test_train_after_a_check_embeds_no_train_or_validation_image_again(
    workspace, planted, monkeypatch
) -> None:
    from autovision.search import run as run_mod
    from autovision.search import search as search_mod

    p = planted()
    dataset_embeddings(workspace, p.ds)
    timings: list[tuple[str, dict]] = []
    real = search_mod.train_linear

    def spy(rt, cfg, plan, folder, on_epoch=None, **kw):
        out = real(rt, cfg, plan, folder, on_epoch, **kw)
        timings.append((cfg.mode, dict(out.timings)))
        return out

    monkeypatch.setattr(search_mod, "train_linear", spy)
    result = run_mod.train(workspace, p.ds.ref, trials=1)
    assert result.best["mode"] == "linear" and result.best["backbone"] == "efficientnet_lite0"
    assert timings and all(t["embed_images"] == 0 for _, t in timings), timings
