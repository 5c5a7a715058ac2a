"""The proof that the ImageNet weights are mapped right: real photos get their ImageNet class.

scikit-image's ``chelsea`` is a tabby cat photo and ``coffee`` a cup of espresso. Class ids:
281 tabby, 282 tiger cat, 285 Egyptian cat, 967 espresso.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from autovision.models.preprocess import Preprocessing, preprocess
from autovision.models.registry import create_model, get_backbone_cfg

skimage_data = pytest.importorskip("skimage.data")

EGYPTIAN_CAT, ESPRESSO = 285, 967
LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _probs(name: str) -> np.ndarray:
    cfg = get_backbone_cfg(name)
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    images = [Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())]
    x = torch.from_numpy(preprocess(images, spec))
    model = create_model(name, num_classes=1000, pretrained=True).eval()
    with torch.no_grad():
        return model(x).softmax(-1).numpy()


@pytest.mark.parametrize("name", LITES)
def test_imagenet_classes_of_chelsea_and_coffee(name: str) -> None:
    cat, coffee = _probs(name)
    top3_cat = list(np.argsort(cat)[::-1][:3])
    assert EGYPTIAN_CAT in top3_cat, f"{name}: chelsea top-3 {top3_cat}"
    assert set(top3_cat) <= {281, 282, 285, 287}, f"{name}: chelsea top-3 {top3_cat} not cats"
    assert int(coffee.argmax()) == ESPRESSO, f"{name}: coffee top-1 {int(coffee.argmax())}"
    assert coffee[ESPRESSO] > 0.5
    if name == "efficientnet_lite0":
        assert int(cat.argmax()) == EGYPTIAN_CAT
        assert cat[EGYPTIAN_CAT] > 0.5


def test_num_classes_1000_keeps_the_imagenet_classifier() -> None:
    from autovision.models.efficientnet import weights_path

    src = torch.load(weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = create_model("efficientnet_lite0", num_classes=1000, pretrained=True)
    torch.testing.assert_close(model.classifier.weight, src["_fc.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.classifier.bias, src["_fc.bias"], rtol=0, atol=0)
