"""Photo-like test images shared by the quality, duplicate and report tests.

The conftest's stripe patterns are mostly per-pixel noise, which resizing and JPEG remove:
their copies are not perceptually stable, so near-duplicate tests use these.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int = 0, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A photo-like image: a colour gradient, sharp shapes of random colours, sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = (xx / max(w - 1, 1))[..., None]
    img = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(14):
        x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
