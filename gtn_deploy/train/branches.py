"""Student branches: teacher stage k -> adapter A_k -> supernet stages after it -> head.

Branch 0 is the full student from the image (through the supernet stem). Branch k > 0 starts
at teacher stage k's output h_k (never detached, so the branch losses shape the teacher),
maps it with a 1x1 conv + BN + ReLU to the channels of the supernet stage it feeds and, where
the spatial size differs, resizes it (average pooling down, bilinear up). Where a stage's
input width is elastic (ResNet widths), the adapter is built for the widest and the active
subnet takes its first channels, as the supernet's own convolutions do.

Which supernet stage a teacher stage feeds: teacher and supernet usually have different
numbers of stages, so teacher stage k (all but the last) feeds the supernet stage j >= 1 whose
input resolution is closest to h_k's, ties broken by relative depth (k+1)/K_T ~ j/K_S. Stages
are used at most once and in increasing order.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gtn_deploy.spaces.base import conv_out


def branch_points(teacher_sizes: list[int], supernet_sizes: list[int]) -> list[tuple[int, int]]:
    """(teacher stage, supernet stage) pairs from the spatial sizes at those points.

    ``teacher_sizes[k]``: side of teacher stage k's output; ``supernet_sizes[j]``: side of the
    input of supernet stage j, both for the same image.
    """
    kt, ks = len(teacher_sizes), len(supernet_sizes)
    pairs, last = [], 0
    for k in range(kt - 1):
        def cost(j: int) -> tuple[float, float]:
            return (abs(math.log2(teacher_sizes[k] / supernet_sizes[j])),
                    abs(j / ks - (k + 1) / kt))

        free = [j for j in range(max(1, last + 1), ks)]
        if not free:
            break
        j = min(free, key=cost)
        pairs.append((k, j))
        last = j
    return pairs


class Adapter(nn.Module):
    """1x1 conv + BN + ReLU from teacher channels to supernet channels, then resize."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, h: torch.Tensor, size: int, channels: int) -> torch.Tensor:
        out = self.act(self.bn(self.conv(h)))
        if channels < out.shape[1]:  # per-channel BN and ReLU: slicing after them is exact
            out = out[:, :channels]
        return resize(out, size)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if x.shape[-1] > size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class StudentBranches(nn.Module):
    """The adapters, and the branch forward through the (active) supernet."""

    def __init__(self, teacher: nn.Module, supernet: nn.Module, image_size: int):
        super().__init__()
        channels, sizes = probe_teacher(teacher, supernet.space.task.in_channels, image_size)
        num_stages = supernet.space.num_stages
        sn_sizes = [_side(image_size, supernet.stage_in_stride(j)) for j in range(num_stages)]
        self.points = branch_points(sizes, sn_sizes)
        self.adapters = nn.ModuleList(
            Adapter(channels[k], supernet.max_stage_in_channels(j)) for k, j in self.points)

    @property
    def num_branches(self) -> int:
        """Branch 0 (the full student from the image) plus one per adapter."""
        return 1 + len(self.adapters)

    def forward(self, supernet: nn.Module, x: torch.Tensor, feats: list[torch.Tensor],
                arch, which: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Logits of the branches ``which`` (default all) for ``arch`` (set active by the
        caller), in the order given."""
        logits = []
        for b in range(self.num_branches) if which is None else which:
            if b == 0:
                h = supernet.stem_forward(resize(x, arch.resolution))
                logits.append(supernet.forward_from(h, 0))
                continue
            k, j = self.points[b - 1]
            h = self.adapters[b - 1](feats[k], _side(arch.resolution,
                                                     supernet.stage_in_stride(j)),
                                     supernet.stage_in_channels(j))
            logits.append(supernet.forward_from(h, j))
        return logits

    def describe(self) -> list[dict]:
        return [{"teacher_stage": k, "supernet_stage": j} for k, j in self.points]


def _side(resolution: int, stride: int) -> int:
    # 'same' convolutions: each stride-2 halves the side rounding up, i.e. ceil(r / stride)
    return conv_out(resolution, stride)


@torch.no_grad()
def probe_teacher(teacher: nn.Module, in_channels: int, image_size: int
                  ) -> tuple[list[int], list[int]]:
    """Channels and spatial side of each teacher stage's output, from one dummy forward."""
    was_training = teacher.training
    teacher.eval()
    try:
        param = next(teacher.parameters())
        x = torch.zeros(1, in_channels, image_size, image_size, device=param.device)
        feats, _ = teacher.forward_features(x)
    finally:
        teacher.train(was_training)
    return [int(f.shape[1]) for f in feats], [int(f.shape[-1]) for f in feats]
