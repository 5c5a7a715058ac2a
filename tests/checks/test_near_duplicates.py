"""Near duplicates by content: cosine similarity of embeddings, blockwise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageOps

from autovision.checks import near_duplicates as nd
from autovision.checks.near_duplicates import CONTENT_SIMILARITY, content_pairs

from ._real import hue_shift, lite0_embeddings, photo


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _near(u: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine ``cos`` to the unit vector ``u``, in a random direction."""
    w = rng.standard_normal(u.shape)
    w = _unit(w - (w @ u) * u)
    return cos * u + np.sqrt(1 - cos**2) * w


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


@pytest.mark.parametrize("neighbours", [0, 1, 3])
def test_blocks_give_the_same_pairs_as_one_matrix(monkeypatch, neighbours: int) -> None:
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((300, 8))
    ids = list(range(300))
    whole = content_pairs(emb, ids, threshold=0.8, neighbours=neighbours)
    monkeypatch.setattr(nd, "_BLOCK_FLOATS", 7 * 300)  # blocks of 7 rows
    blocks = content_pairs(emb, ids, threshold=0.8, neighbours=neighbours)
    assert blocks["pairs"] == whole["pairs"]
    sim = _unit(emb) @ _unit(emb).T
    np.fill_diagonal(sim, -np.inf)
    keep = sim >= 0.8
    if neighbours:  # one of the two among the other's `neighbours` most similar
        kth = -np.partition(-sim, neighbours - 1, axis=1)[:, neighbours - 1]
        near = sim >= kth[:, None] - 1e-6
        keep &= near | near.T | (sim >= nd.SAME_PICTURE)
    assert len(whole["pairs"]) == int(np.triu(keep, 1).sum()) > 0
    assert whole["neighbours"] == neighbours


def test_a_crop_pairs_with_its_source_not_with_the_source_series() -> None:
    """Five drawings of one series (cosine ~0.95 to each other) and a crop of the third
    (0.93 to it, ~0.89 to its siblings): the crop pairs with its source alone, where the
    threshold alone paired it with the whole series too."""
    rng = np.random.default_rng(4)
    theme = _unit(rng.standard_normal(64))
    series = np.array([_near(theme, 0.975, rng) for _ in range(5)])  # ~0.95 to each other
    crop = _near(series[2], 0.93, rng)  # ~0.91 to its source's siblings
    others = _unit(rng.standard_normal((20, 64)))  # unrelated images
    emb = np.vstack([series, crop, others])
    sim = emb @ emb.T
    assert 0.90 <= sim[5, 2] < sim[0:5, 0:5][~np.eye(5, dtype=bool)].min()  # a series is closer
    assert (np.delete(sim[5, :5], 2) >= 0.86).all()  # and the crop close to all of it
    ids = [10, 11, 12, 13, 14, 15, *range(100, 120)]
    before = content_pairs(emb, ids, threshold=0.86, neighbours=0)["pairs"]
    assert {(a, b) for a, b, _ in before if 15 in (a, b)} == {
        (10, 15),
        (11, 15),
        (12, 15),
        (13, 15),
        (14, 15),
    }
    out = content_pairs(emb, ids, threshold=0.86)
    pairs = {(a, b) for a, b, _ in out["pairs"]}
    assert {p for p in pairs if 15 in p} == {(12, 15)}
    assert all(a < 100 and b < 100 for a, b in pairs)  # nothing with the unrelated images
    assert pairs - {(12, 15)}  # the series still pairs among itself (nearest neighbours)
    assert len(pairs) < len(before)


def test_a_crop_of_an_image_present_twice_pairs_with_both_copies() -> None:
    """Ties count: the crop's nearest neighbour is either of two exact copies, and mutual
    nearest neighbours would lose it (each copy's nearest is the other)."""
    rng = np.random.default_rng(5)
    base = _unit(rng.standard_normal(32))
    crop = _near(base, 0.95, rng)
    emb = np.vstack([base, base, crop, _unit(rng.standard_normal((10, 32)))])
    out = content_pairs(emb, list(range(1, 14)), threshold=0.9)
    assert [p[:2] for p in out["pairs"]] == [[1, 2], [1, 3], [2, 3]]


def test_near_identical_images_form_one_group_whatever_their_rank() -> None:
    rng = np.random.default_rng(6)
    base = _unit(rng.standard_normal(32))
    same = np.array([_near(base, 0.995, rng) for _ in range(4)])  # ~0.99 to each other
    emb = np.vstack([same, _unit(rng.standard_normal((10, 32)))])
    pairs = {(a, b) for a, b, _ in content_pairs(emb, list(range(14)))["pairs"]}
    assert pairs == {(a, b) for a in range(4) for b in range(a + 1, 4)}
    with pytest.raises(ValueError, match="neighbours"):
        content_pairs(emb, list(range(14)), neighbours=-1)


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
    """Real EfficientNet-Lite0 embeddings: the copies pass the default rule and form one
    group with their source (the crop's nearest may be the mirror image), unrelated images do
    not (no mirrored pass needed: pooled features are almost mirror-invariant)."""
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    base = photo(0, (224, 168))
    w, h = base.size
    copies = [base.crop((12, 9, w - 10, h - 8)), ImageOps.mirror(base), hue_shift(base)]
    unrelated = [Image.fromarray(skimage_data.coffee()), Image.fromarray(skimage_data.astronaut())]
    emb = lite0_embeddings([base, *copies, *unrelated])
    pairs = {(a, b) for a, b, _ in content_pairs(emb, [1, 2, 3, 4, 5, 6])["pairs"]}
    assert _group_of(1, pairs) == {1, 2, 3, 4}
    assert not any(5 in p or 6 in p for p in pairs)


def _group_of(x: int, pairs: set[tuple[int, int]]) -> set[int]:
    group, grown = {x}, True
    while grown:
        more = {v for p in pairs if group & set(p) for v in p} - group
        group |= more
        grown = bool(more)
    return group
