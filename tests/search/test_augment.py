from __future__ import annotations

import numpy as np
import pytest
import torch

from autovision.search.augment import BatchAugment, to_input

MEAN, STD = (127.5,) * 3, (127.5,) * 3


def _batch(n: int = 8, s: int = 16) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8))


def test_strength_zero_is_the_plain_input() -> None:
    x = _batch()
    aug = BatchAugment(mean=MEAN, std=STD, num_classes=3, multi_label=False)
    out, target = aug(x, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(out, to_input(x, mean, std))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(target.sum(1), torch.ones(8)) and target.argmax(1).tolist()[:3] == [
        0,
        1,
        2,
    ]


@pytest.mark.parametrize("auto", ["none", "randaugment", "trivialaugment"])
@pytest.mark.parametrize("mix", ["none", "mixup", "cutmix"])
def test_augmented_batches(auto: str, mix: str) -> None:
    torch.manual_seed(0)
    aug = BatchAugment(
        mean=MEAN,
        std=STD,
        num_classes=4,
        multi_label=False,
        strength=0.8,
        hflip=True,
        auto_augment=auto,
        label_smoothing=0.1,
        mix=mix,
        small=True,
    )
    out, target = aug(_batch(), torch.arange(8) % 4)
    assert out.shape == (8, 3, 16, 16) and torch.isfinite(out).all()
    assert target.shape == (8, 4) and torch.allclose(target.sum(1), torch.ones(8))


def test_multi_label_targets_and_seeding() -> None:
    y = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.float32)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        aug = BatchAugment(mean=MEAN, std=STD, num_classes=3, multi_label=True, strength=1.0)
        outs.append(aug(_batch(2), y))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], y)


def test_small_images_shift_by_whole_pixels() -> None:
    torch.manual_seed(1)
    aug = BatchAugment(
        mean=MEAN, std=STD, num_classes=2, multi_label=False, strength=0.6, hflip=True, small=True
    )
    aug._erase = aug._colour = lambda x: x  # check the shift alone
    x = _batch(16, 10)
    out, _ = aug(x, torch.zeros(16, dtype=torch.long))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    ref = torch.nn.functional.pad(to_input(x, mean, std), (1, 1, 1, 1))
    flips = 0
    for i in range(16):
        windows = [
            (ref[i, :, dy : dy + 10, dx : dx + 10], f)
            for dy in range(3)
            for dx in range(3)
            for f in (False, True)
        ]
        hits = [f for w, f in windows if torch.equal(out[i], w.flip(2) if f else w)]
        assert hits, f"image {i} is not a whole-pixel shift"
        flips += hits[0]
    assert 0 < flips < 16


def test_erasing_uses_the_mean_colour() -> None:
    torch.manual_seed(0)
    aug = BatchAugment(
        mean=MEAN, std=STD, num_classes=2, multi_label=False, strength=1.0, small=True
    )
    x = torch.full((64, 3, 12, 12), 5.0)
    out = aug._erase(x)
    erased = (out == 0).all(1)
    assert 0 < erased.flatten(1).any(1).sum() < 64  # about half of the images
    assert ((out == 0) | (out == 5.0)).all()
