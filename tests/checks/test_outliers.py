"""Outliers: mean cosine distance to the nearest neighbours, Tukey's fence, a ranking."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autovision.checks import outliers as out_mod
from autovision.checks.outliers import find_outliers, knn_distances

from ._real import lite0_embeddings, photo


def _clusters(rng: np.random.Generator, n: int = 60, dim: int = 16) -> np.ndarray:
    centres = np.eye(dim)[:3] * 3
    return np.vstack([c + 0.1 * rng.standard_normal((n, dim)) for c in centres])


def test_a_far_image_is_flagged_and_ranked_first() -> None:
    rng = np.random.default_rng(0)
    emb = np.vstack([_clusters(rng), np.eye(16)[9] * 3])  # the last belongs to no cluster
    ids = [1000 + i for i in range(len(emb))]
    out = find_outliers(emb, ids, k=5)
    assert out["checked"] == 181 and out["k"] == 5
    assert out["outliers"][0]["id"] == 1180 and len(out["outliers"]) <= 1 + 180 * 0.03
    assert out["outliers"][0]["score"] > out["threshold"]
    ranking = out["ranking"]
    assert len(ranking) == 20 and ranking[0]["id"] == 1180  # max(20, 10% of 181)
    assert [e["score"] for e in ranking] == sorted((e["score"] for e in ranking), reverse=True)
    big = find_outliers(np.vstack([_clusters(rng, 100)]), list(range(300)))
    assert len(big["ranking"]) == 30


def test_a_copy_does_not_hide_an_outlier() -> None:
    """Two copies of a screenshot are each other's nearest neighbour at distance 0."""
    rng = np.random.default_rng(1)
    far = np.eye(16)[9] * 3
    emb = np.vstack([_clusters(rng), far, far])
    flagged = [e["id"] for e in find_outliers(emb, list(range(len(emb))))["outliers"]]
    assert sorted(flagged[:2]) == [180, 181]
    assert len(flagged) <= 2 + 180 * 0.03  # Tukey's fence: a few tail points of a cluster


def test_fit_mask_scores_the_others_against_the_reference() -> None:
    rng = np.random.default_rng(2)
    clusters = _clusters(rng)
    far = np.eye(16)[9] * 3
    emb = np.vstack([clusters, far, far + 0.01, clusters[:5] + 0.01])
    mask = np.zeros(len(emb), dtype=bool)
    mask[:180] = True  # the unlabelled rest is scored against the labelled images
    out = find_outliers(emb, list(range(len(emb))), fit_mask=mask)
    assert out["checked"] == len(emb)
    assert sorted(e["id"] for e in out["outliers"][:2]) == [180, 181]
    assert {185, 186, 187, 188, 189}.isdisjoint(e["id"] for e in out["outliers"])


def test_blockwise_knn_matches_the_dense_computation(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    ref, pts = rng.standard_normal((90, 6)), rng.standard_normal((40, 6))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    dense = np.sort(1 - unit(pts) @ unit(ref).T, axis=1)[:, :4].mean(1)
    own = 1 - unit(ref) @ unit(ref).T
    np.fill_diagonal(own, np.inf)
    dense_own = np.sort(own, axis=1)[:, :4].mean(1)
    monkeypatch.setattr(out_mod, "_BLOCK_FLOATS", 90 * 7)
    np.testing.assert_allclose(knn_distances(ref, pts, k=4), dense, atol=1e-5)
    np.testing.assert_allclose(knn_distances(ref, k=4), dense_own, atol=1e-5)


def test_too_few_images_and_bad_shapes() -> None:
    assert find_outliers(np.ones((1, 4)), [7])["outliers"] == []
    with pytest.raises(ValueError, match="3 ids"):
        find_outliers(np.ones((2, 4)), [1, 2, 3])


@pytest.mark.slow
def test_a_real_photo_among_generated_images_is_the_outlier() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    images = [photo(seed, (224, 168)) for seed in range(24)]
    images.append(Image.fromarray(skimage_data.chelsea()))
    out = find_outliers(lite0_embeddings(images), list(range(25)), k=5)
    assert out["ranking"][0]["id"] == 24
    assert 24 in {e["id"] for e in out["outliers"]}
