"""Augmentation on whole batches of tensors (no per-image Python work, so 2 CPU cores keep up).

One affine ``grid_sample`` per batch does random resized crop, rotation and flips with
per-image parameters (small images get whole-pixel shifts and flips instead: resampling
would blur them); random erasing and colour jitter are per-image arithmetic; RandAugment /
TrivialAugment (torchvision) run on small chunks of the batch so neighbours get different
operations; mixup / cutmix are timm's :class:`~timm.data.Mixup`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)
AUTO_CHUNK = 8
SMALL_SHIFT = 0.15  # small images: shift by up to this share of the side, times the strength
SMALL_ERASE = 0.5  # share of images with a random erasing, times the strength
ERASE = 0.25


def to_input(
    x_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW (channels-last memory), as the model package does."""
    x = x_u8.permute(0, 3, 1, 2).to(dtype)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float, multi: bool) -> torch.Tensor:
    if multi:
        return y.float() * (1.0 - smoothing) + 0.5 * smoothing
    off = smoothing / num_classes
    out = torch.full((len(y), num_classes), off, device=y.device)
    return out.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)


class BatchAugment:
    """Callable ``(x_u8 NHWC, y) -> (normalised NCHW input, soft targets)``.

    ``strength`` in [0, 1] scales crop area, rotation and colour jitter; ``small`` images get
    gentle crops plus translation (pad-and-crop style) instead of aggressive resized crops.
    """

    def __init__(
        self,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        num_classes: int,
        multi_label: bool,
        strength: float = 0.0,
        hflip: bool = False,
        auto_augment: str = "none",
        label_smoothing: float = 0.0,
        mix: str = "none",
        small: bool = False,
        grayscale: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.num_classes = num_classes
        self.multi = multi_label
        self.s = float(min(max(strength, 0.0), 1.0))
        self.hflip = hflip
        self.smoothing = label_smoothing
        self.small = small
        self.grayscale = grayscale
        self.auto = self._auto_augment(auto_augment)
        self.mixup = None
        if mix != "none":
            from timm.data import Mixup

            self.mixup = Mixup(
                mixup_alpha=0.2 if mix == "mixup" else 0.0,
                cutmix_alpha=1.0 if mix == "cutmix" else 0.0,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
                multi_label=multi_label,
            )

    def _auto_augment(self, name: str):
        if name == "none":
            return None
        from torchvision.transforms import v2

        if name == "randaugment":
            return v2.RandAugment(num_ops=2, magnitude=int(round(5 + 8 * self.s)))
        if name == "trivialaugment":
            return v2.TrivialAugmentWide()
        raise ValueError(f"unknown auto augmentation {name!r}")

    def __call__(self, x_u8: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_u8 = x_u8.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        x = x_u8.permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        if self.auto is not None:
            x = torch.cat([self.auto(c.contiguous()) for c in x.split(AUTO_CHUNK)])
        x = x.float()
        if self.s > 0:
            x = self._colour(x)
        x = (x - self.mean) / self.std
        if self.s > 0:
            x = self._geometric(x)
        elif self.hflip:
            flip = torch.rand(len(x), device=self.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        x = x.contiguous(memory_format=torch.channels_last)
        if self.mixup is not None and len(x) % 2 == 0 and len(x) > 1:
            return self.mixup(x, y)
        return x, soft_targets(y, self.num_classes, self.smoothing, self.multi)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        j = 0.4 * self.s
        n = len(x)

        def factor() -> torch.Tensor:
            return torch.empty(n, 1, 1, 1, device=self.device).uniform_(1 - j, 1 + j)

        luma = torch.tensor(_LUMA, device=self.device).view(1, 3, 1, 1)
        x = x * factor()
        m = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (x - m) * factor() + m
        if not self.grayscale:
            gray = (x * luma).sum(1, keepdim=True)
            x = (x - gray) * factor() + gray
        return x.clamp_(0, 255)

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        x = self._shift(x) if self.small else self._affine(x)
        return self._erase(x)

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        """Small images: whole-pixel translation (pad and crop) and flips, no resampling blur."""
        n, _, h, w = x.shape
        pad = max(1, round(SMALL_SHIFT * self.s * max(h, w)))
        xp = F.pad(x, (pad, pad, pad, pad))  # zeros after normalisation = the mean colour
        dy = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=self.device)
        dx = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=self.device)
        rows = (dy + torch.arange(h, device=self.device).view(1, 1, h, 1)).expand(
            -1, 3, -1, w + 2 * pad
        )
        x = xp.gather(2, rows)
        cols = dx + torch.arange(w, device=self.device).view(1, 1, 1, w)
        if self.hflip:
            flip = (torch.rand(n, 1, 1, 1, device=self.device) < 0.5).long()
            cols = (
                flip * (dx + torch.arange(w - 1, -1, -1, device=self.device).view(1, 1, 1, w))
                + (1 - flip) * cols
            )
        return x.gather(3, cols.expand(-1, 3, h, -1))

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        """Random resized crop, rotation and flip in one ``grid_sample`` per batch."""
        n, dev, s = len(x), self.device, self.s
        area_min, max_rot = 1.0 - 0.75 * s, 15.0 * s
        area = torch.empty(n, device=dev).uniform_(area_min, 1.0)
        log_r = torch.empty(n, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3)) * s
        ratio = log_r.exp()
        sx = (area * ratio).sqrt().clamp(max=1.0)
        sy = (area / ratio).sqrt().clamp(max=1.0)
        tx = (torch.rand(n, device=dev) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, device=dev) * 2 - 1) * (1 - sy)
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(max_rot)
        flip = torch.ones(n, device=dev)
        if self.hflip:
            flip = torch.where(torch.rand(n, device=dev) < 0.5, -flip, flip)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [
                torch.stack([sx * cos * flip, -sy * sin, tx], 1),
                torch.stack([sx * sin * flip, sy * cos, ty], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # zeros after normalisation = the mean colour at the borders
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """Random erasing: one rectangle (2-20% of the image) set to the mean colour, on a
        share of the images that grows with the strength."""
        n, _, h, w = x.shape
        dev = self.device
        p = (SMALL_ERASE if self.small else ERASE) * self.s
        area = torch.empty(n, device=dev).uniform_(0.02, 0.2) * h * w
        log_r = torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3))
        eh = (area * log_r.exp()).sqrt().clamp(1, h)
        ew = (area / log_r.exp()).sqrt().clamp(1, w)
        y0 = torch.rand(n, device=dev) * (h - eh)
        x0 = torch.rand(n, device=dev) * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        inside = (
            (ys >= y0.view(-1, 1, 1))
            & (ys < (y0 + eh).view(-1, 1, 1))
            & (xs >= x0.view(-1, 1, 1))
            & (xs < (x0 + ew).view(-1, 1, 1))
        )
        erase = inside & (torch.rand(n, 1, 1, device=dev) < p)
        return x.masked_fill(erase.unsqueeze(1), 0.0)
