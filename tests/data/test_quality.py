"""Quality stats and flags: each flag raised by a purpose-made image, none by a normal one."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from autovision.data import quality as Q
from autovision.data.dataset import Item

from ._images import photo


def item_for(img: Image.Image, item_id: int = 1, size: tuple[int, int] | None = None) -> Item:
    w, h = size or img.size
    return Item(
        id=item_id,
        sha256=f"sha{item_id}",
        source=f"images/{item_id}.png",
        labels=("a",),
        split="train",
        width=w,
        height=h,
        format="PNG",
        stats=Q.analyze(img),
    )


def flags_of(item: Item) -> set[str]:
    return {flag for flag, entries in Q.quality_flags([item]).items() if entries}


def test_analyze_returns_json_floats() -> None:
    stats = Q.analyze(photo())
    assert set(stats) >= {"brightness", "sharpness", "entropy", "channel_diff", "mean_r"}
    assert all(isinstance(v, float) for v in stats.values())
    assert json.loads(json.dumps(stats)) == stats
    assert 0.0 <= stats["brightness"] <= 1.0


@pytest.mark.parametrize("seed", range(6))
def test_normal_photos_raise_no_flag(seed: int) -> None:
    assert flags_of(item_for(photo(seed))) == set()


def test_conftest_pattern_image_raises_no_flag(make_image) -> None:
    img = make_image(label_index=2, size=64, seed=3)
    assert flags_of(item_for(img)) == set()


def test_small() -> None:
    img = photo(1, (24, 20))
    found = Q.quality_flags([item_for(img)])
    assert [e["value"] for e in found["small"]] == [20.0]
    assert "small" not in flags_of(item_for(photo(1, (40, 32))))


def test_odd_aspect_ratio() -> None:
    found = Q.quality_flags([item_for(photo(2, (400, 80)))])
    assert [e["value"] for e in found["odd_aspect_ratio"]] == [5.0]
    assert "odd_aspect_ratio" not in flags_of(item_for(photo(2, (240, 90))))


def test_dark() -> None:
    dark = Image.eval(photo(3), lambda v: int(v * 0.25))
    assert flags_of(item_for(dark)) == {"dark"}


def test_vivid_blue_is_not_dark() -> None:
    arr = np.zeros((96, 128, 3), dtype=np.uint8)
    arr[..., 2] = np.linspace(120, 255, 128, dtype=np.uint8)[None, :]
    arr[::8, :, 0] = 90
    assert "dark" not in flags_of(item_for(Image.fromarray(arr)))


def test_bright() -> None:
    washed = Image.eval(photo(4), lambda v: int(v * 0.25 + 0.75 * 255))
    assert flags_of(item_for(washed)) == {"bright"}


def test_blurry() -> None:
    blurred = photo(5, (320, 240)).filter(ImageFilter.GaussianBlur(8))
    assert flags_of(item_for(blurred)) == {"blurry"}


def test_upscaled_image_is_blurry() -> None:
    upscaled = photo(6, (40, 30)).resize((320, 240), Image.Resampling.BILINEAR)
    assert "blurry" in flags_of(item_for(upscaled))


def test_low_information_blank_image_is_not_also_blurry() -> None:
    blank = Image.new("RGB", (128, 96), (90, 140, 60))
    found = Q.quality_flags([item_for(blank)])
    assert [e["value"] for e in found["low_information"]] == [0.0]
    assert found["blurry"] == []


def colour_items(n: int, first_id: int = 100) -> list[Item]:
    return [item_for(photo(first_id + i), first_id + i) for i in range(n)]


def grayscale_ids(items: list[Item]) -> list[int]:
    return [e["id"] for e in Q.quality_flags(items)["grayscale"]]


def test_grayscale_including_jpeg_recompressed() -> None:
    # Among colour images: a lone grayscale image is flagged only in a mostly colour set.
    gray = photo(7).convert("L").convert("RGB")
    buf = io.BytesIO()
    gray.save(buf, format="JPEG", quality=40)
    jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    items = [item_for(gray, 1), item_for(jpeg, 2), *colour_items(3)]
    assert grayscale_ids(items) == [1, 2]
    assert {f for f, e in Q.quality_flags(items[2:]).items() if e} == set()


def test_grayscale_is_flagged_only_in_a_mostly_colour_dataset() -> None:
    grays = [item_for(photo(30 + i).convert("L").convert("RGB"), 30 + i) for i in range(4)]
    assert grayscale_ids(grays) == []  # digits, X-rays: all grayscale, nothing to flag
    assert grayscale_ids([*grays[:3], *colour_items(10)]) == [30, 31, 32]
    assert grayscale_ids([*grays[:2], *colour_items(2)]) == []  # 50% colour is not most
    assert grayscale_ids([*grays[:2], *colour_items(3)]) == [30, 31]
    # Images without stats are not counted either way.
    bare = [Item(200 + i, "s", "a.png", ("a",), "train", 64, 64, "PNG") for i in range(9)]
    assert grayscale_ids([*grays[:1], *colour_items(2), *bare]) == [30]


def test_stats_hardly_depend_on_the_source_size() -> None:
    """A JPEG draft decode (half size) and the full image measure the same."""
    big = photo(8, (640, 480))
    full, half = Q.analyze(big), Q.analyze(big.resize((320, 240), Image.Resampling.BOX))
    assert half["sharpness"] == pytest.approx(full["sharpness"], rel=0.15)
    assert half["brightness"] == pytest.approx(full["brightness"], abs=0.01)
    assert half["entropy"] == pytest.approx(full["entropy"], abs=0.2)


def test_thumbnail_is_small_and_leaves_small_images_alone() -> None:
    big = photo(9, (640, 480))
    assert Q.thumbnail(big).size == (128, 96)
    small = photo(9, (100, 50))
    assert Q.thumbnail(small) is small
    assert Q.analyze(Q.thumbnail(big)) == Q.analyze(big)


def test_analyze_accepts_other_modes_and_tiny_images() -> None:
    assert Q.analyze(photo(10).convert("L"))["channel_diff"] == 0.0
    tiny = Q.analyze(Image.new("RGB", (2, 1), (10, 20, 30)))
    assert "sharpness" not in tiny and tiny["entropy"] == 0.0


def test_flags_are_sorted_by_id_and_name_the_source() -> None:
    dark = Image.eval(photo(11), lambda v: int(v * 0.2))
    items = [item_for(dark, 7), item_for(photo(12), 3), item_for(dark, 2)]
    found = Q.quality_flags(items)
    assert [e["id"] for e in found["dark"]] == [2, 7]
    assert found["dark"][0]["source"] == "images/2.png"
    assert set(found) == set(Q.FLAGS)


def test_items_without_stats_are_checked_for_size_only() -> None:
    bare = Item(1, "s", "a.png", ("a",), "train", 10, 100, "PNG")
    found = Q.quality_flags([bare])
    assert {f for f, e in found.items() if e} == {"small", "odd_aspect_ratio"}


def test_dataset_wide_flags() -> None:
    # Dark, not grayscale: a grayscale majority is no longer flagged at all.
    dark = [item_for(Image.eval(photo(i), lambda v: int(v * 0.2)), i) for i in range(3)]
    items = [*dark, item_for(photo(20), 20)]
    flags = Q.quality_flags(items)
    assert Q.dataset_wide_flags(flags, len(items)) == {"dark": 0.75}
    assert Q.dataset_wide_flags(flags, 0) == {}
