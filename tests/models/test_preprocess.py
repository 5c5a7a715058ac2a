from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autovision.models.preprocess import Preprocessing, preprocess, resize_image


def _spec(resize: str, size: int = 32) -> Preprocessing:
    return Preprocessing(size, mean=(127.0,) * 3, std=(128.0,) * 3, resize=resize)


def _wide_drawing() -> Image.Image:
    """64x32 white canvas, a red square at the far left and a blue one at the far right."""
    a = np.full((32, 64, 3), 255, np.uint8)
    a[8:24, 0:16] = (255, 0, 0)
    a[8:24, 48:64] = (0, 0, 255)
    return Image.fromarray(a)


def test_pad_keeps_the_whole_image_on_its_border_colour() -> None:
    out = resize_image(_wide_drawing(), _spec("pad"))
    assert out.shape == (32, 32, 3)
    # scaled by 1/2 and centred: rows 0-7 and 24-31 are padding in the border colour (white)
    assert (out[:8] == 255).all() and (out[24:] == 255).all()
    # both squares survive, undistorted (8x8 each), at the left and right edges
    assert (out[13:19, 1:7] == (255, 0, 0)).all()
    assert (out[13:19, 25:31] == (0, 0, 255)).all()


def test_pad_fills_with_the_median_border_colour_of_a_photo() -> None:
    a = np.zeros((20, 40, 3), np.uint8)
    a[:] = (10, 120, 200)
    out = resize_image(Image.fromarray(a), _spec("pad", 20))
    assert (out == (10, 120, 200)).all()


@pytest.mark.parametrize("rule", ["squash", "center_crop", "pad"])
def test_every_rule_gives_the_model_input_shape(rule: str) -> None:
    x = preprocess([_wide_drawing(), _wide_drawing().rotate(90, expand=True)], _spec(rule))
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32


def test_center_crop_cuts_the_sides_and_squash_distorts() -> None:
    crop = resize_image(_wide_drawing(), _spec("center_crop"))
    assert not (crop == (255, 0, 0)).all(axis=-1).any()  # the red square is cut off
    squash = resize_image(_wide_drawing(), _spec("squash"))
    assert (squash[:, :4] == (255, 0, 0)).all(axis=-1).any()
