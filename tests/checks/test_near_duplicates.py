"""Near duplicates by content: cosine similarity of embeddings, blockwise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageOps

from autovision.checks import near_duplicates as nd
from autovision.checks.near_duplicates import CONTENT_SIMILARITY, content_pairs

from ._real import hue_shift, lite0_embeddings, photo


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pairs_above_the_threshold_most_similar_first() -> None:
    rng = np.random.default_rng(0)
    base = _unit(rng.standard_normal((50, 32)))
    copy_of_3 = base[3] + 0.01 * rng.standard_normal(32)
    copy_of_7 = base[7] + 0.03 * rng.standard_normal(32)
    emb = np.vstack([base, copy_of_3, copy_of_7]) * 5.0  # scale does not matter
    ids = [100 + i for i in range(len(emb))]
    out = content_pairs(emb, ids)
    assert out["checked"] == 52 and out["threshold"] == CONTENT_SIMILARITY
    assert [p[:2] for p in out["pairs"]] == [[103, 150], [107, 151]]
    sims = [p[2] for p in out["pairs"]]
    assert sims == sorted(sims, reverse=True) and all(s >= CONTENT_SIMILARITY for s in sims)
    loose = content_pairs(emb, ids, threshold=0.0)
    assert len(loose["pairs"]) > 2 and all(a < b for a, b, _ in loose["pairs"])


def test_blocks_give_the_same_pairs_as_one_matrix(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((300, 8))
    whole = content_pairs(emb, list(range(300)), threshold=0.8)
    monkeypatch.setattr(nd, "_BLOCK_FLOATS", 7 * 300)  # blocks of 7 rows
    assert content_pairs(emb, list(range(300)), threshold=0.8)["pairs"] == whole["pairs"]
    sim = _unit(emb) @ _unit(emb).T
    expected = int((np.triu(sim, 1) >= 0.8).sum())
    assert len(whole["pairs"]) == expected > 0


def test_ids_are_ordered_within_a_pair_and_flipped_embeddings_count() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    mirrored = np.array([[0.0, 1.0], [1.0, 0.0]])  # each image's mirror looks like the other
    assert content_pairs(a, [9, 4])["pairs"] == []
    out = content_pairs(a, [9, 4], emb_flipped=mirrored)
    assert out["pairs"] == [[4, 9, 1.0]] and out["flipped"] is True
    with pytest.raises(ValueError, match="emb_flipped"):
        content_pairs(a, [9, 4], emb_flipped=mirrored[:1])
    with pytest.raises(ValueError, match="2 ids"):
        content_pairs(a[:1], [9, 4])


def test_pairs_are_capped(monkeypatch) -> None:
    monkeypatch.setattr(nd, "MAX_PAIRS", 3)
    out = content_pairs(np.ones((4, 3)), [1, 2, 3, 4])
    assert len(out["pairs"]) == 3 and out["truncated"] is True


@pytest.mark.slow
def test_crop_flip_and_colour_change_of_a_real_image_are_grouped() -> None:
    """Real EfficientNet-Lite0 embeddings: the copies pass the default threshold, unrelated
    images do not (no mirrored pass needed: pooled features are almost mirror-invariant)."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    base = photo(0, (224, 168))
    w, h = base.size
    copies = [base.crop((12, 9, w - 10, h - 8)), ImageOps.mirror(base), hue_shift(base)]
    unrelated = [Image.fromarray(skimage_data.coffee()), Image.fromarray(skimage_data.astronaut())]
    emb = lite0_embeddings([base, *copies, *unrelated])
    pairs = {(a, b) for a, b, _ in content_pairs(emb, [1, 2, 3, 4, 5, 6])["pairs"]}
    assert {(1, 2), (1, 3), (1, 4)} <= pairs
    assert not any(5 in p or 6 in p for p in pairs)
