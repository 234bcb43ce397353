"""What every teacher exposes: stem, stages and a head, with per-stage features.

The GTN branches attach to stage outputs (``forward_features``); ``stage_channels`` and
``stage_strides`` (total downsampling at each stage output) size the adapters.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Global average pool, flatten, linear."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(x)))


class StagedTeacher(nn.Module):
    """``stem`` -> ``stages[0..K-1]`` -> ``head``; subclasses build the three parts."""

    name: str = ""
    stem_channels: int
    stem_stride: int
    stage_channels: list[int]
    stage_strides: list[int]

    def __init__(self) -> None:
        super().__init__()

    def stem_features(self, x: torch.Tensor) -> torch.Tensor:
        """The stem output (the input of stage 0)."""
        return self.stem(x)

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(output of every stage, logits)."""
        h = self.stem(x)
        feats = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats, self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.head(h)


def init_resnet(module: nn.Module) -> None:
    """He (fan out) convs, unit BN, default linears: the usual ResNet initialisation."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
