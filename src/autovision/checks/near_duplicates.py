"""Near duplicates by content: cosine similarity of embeddings (crops, flips, colour
changes, small rotations), the copies a perceptual hash misses.

``content_pairs(emb, ids, *, emb_flipped=None, threshold=None, neighbours=None,
same_picture=None)`` L2-normalises the embeddings and keeps a pair when its cosine
similarity reaches ``threshold`` (:data:`CONTENT_SIMILARITY`) **and** one of the two is the
other's nearest neighbour (:data:`NEIGHBOURS`; ties count), or the similarity reaches
:data:`SAME_PICTURE`. Blockwise matrix products (no N x N matrix).

Why the nearest-neighbour condition: a threshold alone cannot tell a crop from a series.
Clip-art and product sets hold series of distinct but near-identical drawings (one artist's
colour variants, road signs, smileys; openclipart's reach cosine 0.95-0.97), as similar as a
crop is to its source. With the threshold alone a crop of one drawing of a series paired
with every sibling, and the series with each other, all pairs (openclipart with planted
copies: 642 pairs, 526 of them between images that are not planted copies, and only 57% of
the pairs of a crop or mirror image with its own source). A copy differs from its source by a
small change, so its nearest neighbour is its source (all 77 planted copies of the
benchmark), while a sibling of the source is further; keeping a pair only where one member
is the other's nearest lets each image add only its nearest (plus ties), which drops the
copy-to-sibling pairs and most series pairs (266 pairs, 193 not involving a copy; all 30 crop
or mirror pairs right; see ``benchmarks/README.md``). It is one-sided on purpose: mutual
nearest neighbours (the usual remedy for hubs) lose a crop whose source has a closer
sibling, or a second exact copy, since the source's nearest is then not the crop. Ties
(exact copies) all count, so a crop of an image present twice pairs with both.
:data:`SAME_PICTURE` keeps every pair of near-identical images, so that a set of them forms
one group instead of nearest-neighbour pairs. ``neighbours=0`` keeps every pair above the
threshold (the rule before).

With ``emb_flipped`` (embeddings of the mirrored images) a pair's similarity is also taken
image-against-mirror, the larger counting. The runner need not pay for that second
embedding pass (as long as the first): globally pooled CNN features are almost
mirror-invariant (a mirrored openclipart image scores 0.975 median, 0.918 at worst, against
its source), and the mirrored pass raised other copies' similarity by about 0.01.

Returns ``{"method", "threshold", "neighbours", "same_picture", "checked", "flipped",
"pairs": [[id_a, id_b, sim], ...]}`` with ``id_a < id_b``, most similar first (at most
:data:`MAX_PAIRS`; ``"truncated"`` says when more matched). The data report groups the pairs
with the perceptual-hash ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autovision.checks.outliers import unit_rows

CONTENT_SIMILARITY = 0.90
"""Default cosine-similarity threshold (EfficientNet-Lite0 pooled features, 1,280-d).

Measured on openclipart (1,542 images; 300 or 150 copies of each kind, similarity to the
source): mirror images 0.918 to 0.99 (all found at 0.90), crops keeping 90% of each side
median 0.951 (91% found), 85% 0.926 (81%), 80% 0.897 (47%); hue shifts 0.935 (72%),
rotations by 5-15 degrees 0.942 (77%). Distinct drawings of one series (road signs, stick
men, smileys) reach 0.95 and more, so no threshold separates them from crops: the
nearest-neighbour condition (:data:`NEIGHBOURS`) does most of that work; 0.90 keeps the
remaining series pairs to same-label series (none of the 533 pairs of distinct images over
0.90 had different labels, so they raise no false conflicts)."""
NEIGHBOURS = 1
"""A pair is kept when one member is among the other's ``NEIGHBOURS`` most similar images
(ties included). 1: a copy's nearest neighbour is its source. 2 (either way round) let a
copy pair with its source's closest sibling again: on the benchmark the pairs of crops and
mirror images went from 30 of 30 right to 30 of 34."""
SAME_PICTURE = 0.98
"""Pairs at least this similar are kept whatever their rank: near-identical images (exact
and re-encoded copies score 0.99 and more) form one group. Crops and mirror images reach
0.98 too, so this is the bar of "the same picture", not of a copy."""
MAX_PAIRS = 100_000
"""Most pairs returned (most similar first): a set of near-identical images (digits, blank
scans) would otherwise produce millions."""
_RANK_SLACK = 1e-6  # float32 products of one pair in two blocks may differ in the last bit
_BLOCK_FLOATS = 1 << 24


def _candidates(
    a: np.ndarray, b: np.ndarray | None, threshold: float, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``i < j`` with ``sim(i, j) = max(a_i . a_j, b_i . a_j, a_i . b_j) >= threshold``,
    and for every row its ``k``-th largest similarity to another row (``-inf`` when ``k`` is
    0 or there are too few rows): blocks of whole rows, so each row's rank is exact."""
    n = len(a)
    step = max(1, _BLOCK_FLOATS // max(n, 1))
    kth = np.full(n, -np.inf, dtype=np.float32)
    ii, jj, ss = [], [], []
    for start in range(0, n, step):
        stop = min(n, start + step)
        sim = a[start:stop] @ a.T
        if b is not None:
            sim = np.maximum(sim, b[start:stop] @ a.T)
            sim = np.maximum(sim, a[start:stop] @ b.T)
        rows = np.arange(stop - start)
        sim[rows, rows + start] = -np.inf  # an image is not its own neighbour
        if 0 < k < n:
            kth[start:stop] = -np.partition(-sim, k - 1, axis=1)[:, k - 1]
        r, c = np.nonzero(sim >= threshold)  # row r is item start + r, column c item c
        upper = c > r + start
        r, c = r[upper], c[upper]
        ii.append(r + start)
        jj.append(c)
        ss.append(sim[r, c])
    if not ii:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32), kth
    return np.concatenate(ii), np.concatenate(jj), np.concatenate(ss), kth


def content_pairs(
    emb: np.ndarray,
    ids: Sequence[int],
    *,
    emb_flipped: np.ndarray | None = None,
    threshold: float | None = None,
    neighbours: int | None = None,
    same_picture: float | None = None,
) -> dict[str, Any]:
    """Pairs of images whose embeddings are this similar, one the other's nearest (see the
    module docstring; ``neighbours=0``: every pair above ``threshold``)."""
    emb = np.asarray(emb)
    n = len(ids)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"emb has shape {emb.shape}, expected ({n}, D) for {n} ids")
    if emb_flipped is not None and np.shape(emb_flipped) != emb.shape:
        raise ValueError(f"emb_flipped has shape {np.shape(emb_flipped)}, expected {emb.shape}")
    thr = CONTENT_SIMILARITY if threshold is None else float(threshold)
    k = NEIGHBOURS if neighbours is None else int(neighbours)
    same = SAME_PICTURE if same_picture is None else float(same_picture)
    if k < 0:
        raise ValueError(f"neighbours must be 0 or more, not {k}")
    a = unit_rows(emb)
    b = None if emb_flipped is None else unit_rows(emb_flipped)
    i, j, s, kth = _candidates(a, b, thr, k)
    if k > 0:
        near = (s >= kth[i] - _RANK_SLACK) | (s >= kth[j] - _RANK_SLACK) | (s >= same)
        i, j, s = i[near], j[near], s[near]
    order = np.lexsort((j, i, -s))
    truncated = len(order) > MAX_PAIRS
    order = order[:MAX_PAIRS]
    ids_arr = np.asarray(ids)
    pairs = []
    for x, y, sim in zip(ids_arr[i[order]], ids_arr[j[order]], s[order], strict=True):
        lo, hi = (int(x), int(y)) if x < y else (int(y), int(x))
        pairs.append([lo, hi, round(float(min(sim, 1.0)), 4)])
    out: dict[str, Any] = {
        "method": (
            "cosine similarity of L2-normalised image embeddings"
            + (" (and of mirrored images)" if b is not None else "")
            + f" >= {thr:g}"
            + (f", one of the two among the other's {k} nearest (or >= {same:g})" if k > 0 else "")
        ),
        "threshold": thr,
        "neighbours": k,
        "same_picture": same if k > 0 else None,
        "checked": n,
        "flipped": b is not None,
        "pairs": pairs,
    }
    if truncated:
        out["truncated"] = True
    return out
