"""ResNet teachers: CIFAR-style (3x3 stem, 3 stages; resnet20 / resnet8x4 / resnet32x4 as in
the CRD / SFTN code bases), wide ResNets (wrn_16_2, wrn_40_2) and ResNet-18/34 for 224 px.
Any number of input channels (1 or 3) and classes.
"""

from __future__ import annotations

import torch
from torch import nn

from gtn_deploy.models.base import ClassifierHead, StagedTeacher, init_resnet


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block: conv-BN-ReLU-conv-BN (+ projected shortcut) -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3(cout, cout), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Wide-ResNet block: BN-ReLU-conv-BN-ReLU-conv (+ 1x1 shortcut where widths change)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv3(cout, cout)
        self.relu = nn.ReLU(inplace=False)  # the pre-activation feeds the shortcut too
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return out + (self.shortcut(pre) if self.shortcut is not None else x)


def _stage(block: type, cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*[block(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                           for i in range(n)])


class CifarResNet(StagedTeacher):
    """3x3 stem at ``widths[0]``, three stages of ``n`` BasicBlocks (strides 1, 2, 2)."""

    def __init__(self, name: str, depth: int, widths: tuple[int, int, int, int],
                 in_channels: int, num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.name = name
        self.stem = nn.Sequential(_conv3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            _stage(BasicBlock, widths[i], widths[i + 1], n, 1 if i == 0 else 2) for i in range(3))
        self.head = ClassifierHead(widths[3], num_classes)
        self.stem_channels, self.stem_stride = widths[0], 1
        self.stage_channels, self.stage_strides = list(widths[1:]), [1, 2, 4]
        init_resnet(self)


class WideResNet(StagedTeacher):
    """WRN-depth-k: 3x3 stem to 16, three pre-activation stages of width 16k/32k/64k; the
    final BN-ReLU belongs to the last stage so its feature map is what the head pools."""

    def __init__(self, name: str, depth: int, widen: int, in_channels: int, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"wide ResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.name = name
        self.stem = _conv3(in_channels, 16)
        stages = [_stage(PreActBlock, widths[i], widths[i + 1], n, 1 if i == 0 else 2)
                  for i in range(3)]
        stages[-1].append(nn.BatchNorm2d(widths[3]))
        stages[-1].append(nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(stages)
        self.head = ClassifierHead(widths[3], num_classes)
        self.stem_channels, self.stem_stride = 16, 1
        self.stage_channels, self.stage_strides = widths[1:], [1, 2, 4]
        init_resnet(self)


class ImageNetResNet(StagedTeacher):
    """ResNet-18/34 (torchvision layout): 7x7/2 stem + 3x3/2 max pool, four stages."""

    def __init__(self, name: str, blocks: tuple[int, int, int, int], in_channels: int,
                 num_classes: int):
        super().__init__()
        widths = [64, 64, 128, 256, 512]
        self.name = name
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.stages = nn.ModuleList(
            _stage(BasicBlock, widths[i], widths[i + 1], n, 1 if i == 0 else 2)
            for i, n in enumerate(blocks))
        self.head = ClassifierHead(512, num_classes)
        self.stem_channels, self.stem_stride = 64, 4
        self.stage_channels, self.stage_strides = widths[1:], [4, 8, 16, 32]
        init_resnet(self)
