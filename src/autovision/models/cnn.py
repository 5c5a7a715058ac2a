"""A compact CNN trained from scratch: for small or grayscale images (digits, Fashion-MNIST)
where ImageNet features transfer poorly."""

from __future__ import annotations

import torch
from torch import nn

from autovision.models.registry import BackboneCfg, register_backbone


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CompactCNN(nn.Module):
    """Three conv stages (32-64-128, each two 3x3 convs + BN + ReLU), global pooling, linear head.

    Offers timm's ``forward_features`` / ``forward_head`` so every backbone is used alike.
    """

    def __init__(self, num_classes: int, width: int = 32, drop_rate: float = 0.0) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(3, w),
            nn.MaxPool2d(2),
            _block(w, 2 * w),
            nn.MaxPool2d(2),
            _block(2 * w, 4 * w),
        )
        self.num_features = 4 * w
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = (
            nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_backbone(
    BackboneCfg(
        name="compact_cnn",
        input_size=32,
        feature_dim=128,
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        pretrained=False,
        weights_source="none (trained from scratch)",
        license="Apache-2.0",
        description="Compact 6-conv CNN trained from scratch for small or grayscale images",
        sizes=(28, 32, 48, 64),
    )
)
def build(num_classes: int, pretrained: bool, drop_rate: float) -> nn.Module:
    return CompactCNN(num_classes, drop_rate=drop_rate)
