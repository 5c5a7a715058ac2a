"""Real EfficientNet-Lite0 embeddings (ImageNet weights, the local copy) of a few images,
and the image edits the near-duplicate tests make."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "_images_for_checks", Path(__file__).parents[1] / "data" / "_images.py"
)
_images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_images)
photo = _images.photo
"""The photo-like generated image of ``tests/data/_images.py`` (loaded by path)."""


def lite0_embeddings(images: Sequence[Image.Image]) -> np.ndarray:
    """Pooled pre-logit features [N, 1280], as the search's embedding cache computes them."""
    import torch

    from autovision.models.preprocess import Preprocessing, preprocess
    from autovision.models.registry import create_model, embed, get_backbone_cfg

    cfg = get_backbone_cfg("efficientnet_lite0")
    spec = Preprocessing(input_size=cfg.input_size, mean=cfg.mean, std=cfg.std)
    model = create_model("efficientnet_lite0", num_classes=2, pretrained=True).eval()
    with torch.no_grad():
        return embed(model, torch.from_numpy(preprocess(list(images), spec))).numpy()


def hue_shift(img: Image.Image, amount: int = 30) -> Image.Image:
    arr = np.asarray(img.convert("HSV")).copy()
    arr[..., 0] = (arr[..., 0].astype(int) + amount) % 256
    return Image.fromarray(arr, "HSV").convert("RGB")
