"""Networks and inputs for the tests of every network family (imported by test modules)."""

from __future__ import annotations

import functools
import random

import torch

from gtn_deploy.spaces import create_space
from gtn_deploy.supernet import create_supernet


@functools.lru_cache(maxsize=None)
def supernet(family: str, task: str) -> torch.nn.Module:
    """A seeded supernet in eval mode with non-trivial BN, so that parity is not a check of
    zeros (cached: callers set the active arch and leave the weights alone)."""
    torch.manual_seed(0)
    net = create_supernet(create_space(family, task)).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def archs(space, seed: int, n: int = 2) -> list:
    """The space's smallest and largest arch and ``n`` random ones."""
    rng = random.Random(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


def image(space, arch, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, space.task.in_channels, arch.resolution, arch.resolution,
                       generator=gen)
