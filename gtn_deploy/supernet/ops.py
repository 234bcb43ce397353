"""Dynamic ops: one max-sized weight, sliced to the active sub-shape (Once-for-All style).

Parameter names equal those of the static layers (``weight``, ``bias``, BN buffers), so a
student's state dict is the supernet's with every tensor sliced. Slices are views: the
gradients of every sampled subnet land in the shared max-sized weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicConv2d(nn.Module):
    """1x1 convolution whose input and output widths are chosen per call."""

    def __init__(self, max_in: int, max_out: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(max_out)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        weight = self.weight[:out_channels, : x.size(1)]
        bias = self.bias[:out_channels] if self.bias is not None else None
        return F.conv2d(x, weight, bias)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise kxk convolution with elastic kernel size and width.

    The weight is stored at the largest kernel; a smaller kernel is its centre. With
    ``kernel_transform`` (Once-for-All's elastic kernel) each step down (7 -> 5 -> 3) also
    passes the centre through a learned k^2 x k^2 matrix, initialised to the identity, so
    the small kernels are not forced to equal the big one's centre. Off by default.
    """

    def __init__(self, max_channels: int, kernel_choices: tuple[int, ...], stride: int,
                 kernel_transform: bool = False):
        super().__init__()
        self.kernels = tuple(sorted(kernel_choices, reverse=True))
        kmax = self.kernels[0]
        self.stride = stride
        self.kernel_transform = kernel_transform
        self.weight = nn.Parameter(torch.empty(max_channels, 1, kmax, kmax))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        if kernel_transform:
            for big, small in zip(self.kernels, self.kernels[1:]):
                self.register_parameter(f"transform_{big}to{small}",
                                        nn.Parameter(torch.eye(small * small)))

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        """The (channels, 1, kernel, kernel) filter the subnet uses."""
        weight = self.weight[:channels]
        if not self.kernel_transform:
            return _centre(weight, kernel)
        for big, small in zip(self.kernels, self.kernels[1:]):
            if big <= kernel:
                break
            centre = _centre(weight, small).reshape(channels, small * small)
            matrix = getattr(self, f"transform_{big}to{small}")
            weight = F.linear(centre, matrix).reshape(channels, 1, small, small)
        return weight

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        channels = x.size(1)
        weight = self.active_weight(channels, kernel)
        return F.conv2d(x, weight, None, self.stride, kernel // 2, 1, channels)


def _centre(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    start = (weight.size(-1) - kernel) // 2
    if start == 0:
        return weight
    return weight[..., start:start + kernel, start:start + kernel]


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``C`` channels of its max-sized statistics and affine.

    Running statistics are updated in place in the slice, so every subnet trains the
    shared buffers (momentum ``None`` gives the cumulative average BN recalibration uses).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            self.weight[:c], self.bias[:c], use_batch_stats, factor, self.eps,
        )


class DynamicSE(nn.Module):
    """Once-for-All squeeze-excite over the first ``C`` channels; the squeeze width follows C."""

    def __init__(self, max_channels: int, max_se_channels: int):
        super().__init__()
        self.reduce = DynamicConv2d(max_channels, max_se_channels, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = DynamicConv2d(max_se_channels, max_channels, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor, se_channels: int) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = self.gate(self.expand(self.act(self.reduce(y, se_channels)), x.size(1)))
        return x * y
