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
