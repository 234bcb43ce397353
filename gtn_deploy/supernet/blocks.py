"""Elastic blocks: the MobileNetV3 inverted residual with elastic kernel and expand ratio,
and a stage with elastic depth (the first ``depth`` blocks run, as in Once-for-All)."""

from __future__ import annotations

import torch
from torch import nn

from gtn_deploy.supernet.layers import make_act, mid_channels
from gtn_deploy.supernet.ops import (DynamicBatchNorm2d, DynamicConv2d,
                                     DynamicDepthwiseConv2d, DynamicSE)


class _Unit(nn.Module):
    """Holds ``conv``, ``bn`` and ``act`` under the static layer names; the block calls them."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module | None = None):
        super().__init__()
        self.conv = conv
        self.bn = bn
        if act is not None:
            self.act = act


class DynamicMBConv(nn.Module):
    """Inverted residual whose kernel size and expand ratio are set by ``set_active``."""

    def __init__(self, cin: int, cout: int, stride: int, act: str, se: bool,
                 kernel_choices: tuple[int, ...], expand_choices: tuple[int, ...],
                 se_channels, kernel_transform: bool = False):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.expand_choices = tuple(expand_choices)
        self.se_channels_of = se_channels  # the space's rule: hidden width -> SE width
        max_mid = max(mid_channels(cin, e) for e in expand_choices)
        self.expand = _Unit(DynamicConv2d(cin, max_mid), DynamicBatchNorm2d(max_mid),
                            make_act(act))
        self.depthwise = _Unit(
            DynamicDepthwiseConv2d(max_mid, kernel_choices, stride, kernel_transform),
            DynamicBatchNorm2d(max_mid), make_act(act))
        self.se = DynamicSE(max_mid, se_channels(max_mid)) if se else None
        self.project = _Unit(DynamicConv2d(max_mid, cout), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout
        self.set_active(max(kernel_choices), max(expand_choices))

    def set_active(self, kernel: int, expand_ratio: int) -> None:
        self.active_kernel = kernel
        self.active_expand = expand_ratio
        self.active_mid = mid_channels(self.cin, expand_ratio)
        self.active_se = self.se_channels_of(self.active_mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.active_mid
        out = x
        if self.active_expand != 1:  # as the static block: ratio 1 has no expand conv
            out = self.expand.act(self.expand.bn(self.expand.conv(out, mid)))
        out = self.depthwise.act(self.depthwise.bn(self.depthwise.conv(out, self.active_kernel)))
        if self.se is not None:
            out = self.se(out, self.active_se)
        out = self.project.bn(self.project.conv(out, self.cout))
        return out + x if self.residual else out

    def active_depthwise_weight(self) -> torch.Tensor:
        return self.depthwise.conv.active_weight(self.active_mid, self.active_kernel)


class DynamicStage(nn.Module):
    """``max_depth`` blocks; the first ``active_depth`` of them run."""

    def __init__(self, blocks: list[nn.Module]):  # any family's elastic blocks
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.active_depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in list(self.blocks)[: self.active_depth]:
            x = block(x)
        return x
