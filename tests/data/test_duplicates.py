"""Exact and near duplicates: resized and recompressed copies found, distinct images not."""

from __future__ import annotations

import hashlib
import io
import itertools
import random

import numpy as np
import pytest
from PIL import Image

from autovision.data import duplicates as D
from autovision.data.dataset import Item
from autovision.data.quality import analyze

from ._images import photo as _photo


def photo(seed: int = 0, size: tuple[int, int] = (320, 240)) -> Image.Image:
    return _photo(seed, size)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def item(item_id: int, data: bytes, label: str = "a", split: str = "train") -> Item:
    """An Item as the importer builds it: sha256 of the bytes, stats and pHash of the image."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    return Item(
        id=item_id,
        sha256=hashlib.sha256(data).hexdigest(),
        source=f"src/{item_id}.png",
        labels=(label,),
        split=split,
        width=img.width,
        height=img.height,
        format="PNG",
        phash=D.perceptual_hash(img),
        stats=analyze(img),
    )


def hash_item(item_id: int, value: int, sha: str | None = None) -> Item:
    """An Item with a given 64-bit hash and no stats (the colour check then always passes)."""
    return Item(
        item_id,
        sha or f"sha{item_id}",
        f"{item_id}.png",
        (),
        "train",
        8,
        8,
        "PNG",
        phash=f"{value:016x}",
    )


def distance(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_perceptual_hash_is_64_bit_hex_and_stable_under_resize_and_jpeg() -> None:
    img = photo(0, (640, 480))
    h = D.perceptual_hash(img)
    assert len(h) == 16 and int(h, 16) >= 0
    for copy in (
        img.resize((320, 240), Image.Resampling.BILINEAR),
        img.resize((100, 75), Image.Resampling.LANCZOS),
        Image.open(io.BytesIO(encode(img, "JPEG", quality=30))).convert("RGB"),
    ):
        assert distance(h, D.perceptual_hash(copy)) <= D.NEAR_DUPLICATE_MAX_DISTANCE
    assert distance(h, D.perceptual_hash(photo(1, (640, 480)))) > 3 * D.NEAR_DUPLICATE_MAX_DISTANCE


def test_exact_duplicate_groups() -> None:
    a, b = encode(photo(1)), encode(photo(2))
    items = [item(5, a), item(2, b), item(9, a), item(1, a)]
    assert D.exact_duplicate_groups(items) == [[1, 5, 9]]
    assert D.exact_duplicate_groups(items[:2]) == []


def test_near_duplicates_from_resized_and_recompressed_copies() -> None:
    original = photo(3, (640, 480))
    items = [
        item(1, encode(original)),
        item(2, encode(original.resize((320, 240), Image.Resampling.BILINEAR))),
        item(3, encode(original, "JPEG", quality=30)),
        item(4, encode(photo(4, (640, 480)))),
        item(5, encode(photo(5, (640, 480)))),
        item(6, encode(photo(5, (640, 480)).resize((200, 150)), "JPEG", quality=30)),
    ]
    assert D.near_duplicate_groups(items) == [[1, 2, 3], [5, 6]]


def test_distinct_images_are_not_grouped(make_image) -> None:
    items = [item(i, encode(photo(10 + i))) for i in range(12)]
    items += [item(100 + i, encode(make_image(i % 6, 64, i))) for i in range(12)]
    assert D.near_duplicate_groups(items) == []
    assert D.duplicate_groups(items) == []


def test_exact_copies_alone_are_not_near_duplicates() -> None:
    a = encode(photo(6))
    only_exact = [item(1, a), item(2, a), item(3, encode(photo(7)))]
    assert D.near_duplicate_groups(only_exact) == []
    with_resized = [*only_exact, item(4, encode(photo(6).resize((160, 120))))]
    assert D.near_duplicate_groups(with_resized) == [[1, 2, 4]]


def test_same_structure_different_colour_is_not_a_near_duplicate() -> None:
    black = Image.new("RGB", (64, 64), (0, 0, 0))
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    shape = photo(8).convert("L")
    red = Image.merge("RGB", (shape, Image.new("L", shape.size, 0), Image.new("L", shape.size, 0)))
    blue = Image.merge("RGB", (Image.new("L", shape.size, 0), Image.new("L", shape.size, 0), shape))
    items = [
        item(1, encode(black)),
        item(2, encode(white)),
        item(3, encode(red)),
        item(4, encode(blue)),
    ]
    assert distance(items[0].phash, items[1].phash) <= 1
    assert distance(items[2].phash, items[3].phash) <= 2
    assert D.near_duplicate_groups(items) == []


def test_duplicate_groups_merge_exact_and_near() -> None:
    a = encode(photo(9))
    items = [
        item(1, a),
        item(2, encode(photo(10))),
        item(3, a),
        item(4, encode(photo(9), "JPEG", quality=30)),
        item(5, encode(photo(11))),
        item(6, encode(photo(11))),
    ]
    blank = Item(7, items[1].sha256, "7.png", ("a",), "train", 1, 1, "PNG")  # no hash
    items.append(blank)
    assert D.duplicate_groups(items) == [[1, 3, 4], [2, 7], [5, 6]]


def test_groups_do_not_depend_on_item_order() -> None:
    base = [photo(12), photo(13), photo(14)]
    items = [item(i, encode(img)) for i, img in enumerate(base)]
    items += [
        item(10 + i, encode(img.resize((150, 110)), "JPEG", quality=50))
        for i, img in enumerate(base)
    ]
    expected = D.duplicate_groups(items)
    assert expected == [[0, 10], [1, 11], [2, 12]]
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    assert D.duplicate_groups(shuffled) == expected


def test_near_duplicate_pairs_are_direct_matches_of_different_files() -> None:
    items = [
        hash_item(1, 0),
        hash_item(2, 0b111),
        hash_item(3, 0b111111),
        hash_item(4, 0, sha="sha1"),  # an exact copy of 1
        hash_item(5, 0xFFFF_FFFF_0000_0000),
    ]
    groups, pairs = D.near_duplicates(items, max_distance=4)
    assert groups == [[1, 2, 3, 4]]
    assert pairs == [(1, 2), (2, 3), (2, 4)]
    assert D.near_duplicate_pairs(items, max_distance=4) == pairs
    with pytest.raises(ValueError, match="max_distance"):
        D.near_duplicates(items, max_distance=-1)


def test_invalid_or_missing_hashes_are_skipped() -> None:
    items = [hash_item(1, 5), hash_item(2, 5)]
    items.append(Item(3, "x", "3.png", (), "train", 8, 8, "PNG", phash="not-a-hash-value"))
    items.append(Item(4, "y", "4.png", (), "train", 8, 8, "PNG", phash=""))
    assert D.near_duplicate_groups(items) == [[1, 2]]


def _brute_force_groups(values: list[int], max_distance: int) -> list[list[int]]:
    pairs = [
        (i, j)
        for i, j in itertools.combinations(range(len(values)), 2)
        if bin(values[i] ^ values[j]).count("1") <= max_distance
    ]
    return D.merge_groups(pairs)


@pytest.mark.parametrize("max_distance", [0, 2, 3, 4, 6, 7, 9, 12])
def test_multi_index_search_matches_brute_force(max_distance: int) -> None:
    rng = random.Random(max_distance)
    values = [rng.getrandbits(64) for _ in range(150)]
    for _ in range(150):  # plant copies at every distance up to max_distance + 2
        src = rng.choice(values)
        flips = rng.sample(range(64), rng.randint(0, max_distance + 2))
        values.append(src ^ sum(1 << b for b in flips))
    items = [hash_item(i, v) for i, v in enumerate(values)]
    expected = _brute_force_groups(values, max_distance)
    assert D.near_duplicate_groups(items, max_distance=max_distance) == expected
    assert expected  # the test plants real groups


def test_scales_to_many_items_without_quadratic_work() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    values = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    values[1::1000] = values[::1000] ^ np.uint64(0b101)  # 20 planted near pairs
    items = [hash_item(i, int(v)) for i, v in enumerate(values)]
    groups = D.near_duplicate_groups(items)
    assert groups == [[k, k + 1] for k in range(0, n, 1000)]


def test_merge_groups() -> None:
    assert D.merge_groups([[3, 1], [7, 8]], [[1, 9], [10, 11]], [[11, 8]]) == [
        [1, 3, 9],
        [7, 8, 10, 11],
    ]
    assert D.merge_groups([]) == []
