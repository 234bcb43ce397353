"""The weight-sharing supernet over a ``SearchSpace``.

API (Once-for-All's verbs, without its side effects): ``sample(rng)`` draws an architecture
and changes nothing, ``set_active(arch)`` selects the subnet ``forward`` runs, ``extract``
returns a static student with the active weights copied. The input resolution is whatever
``x`` has; ``arch.resolution`` matters to the data pipeline and the cost model only.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from gtn_deploy.spaces.mbconv import ArchConfig, SearchSpace
from gtn_deploy.supernet.blocks import DynamicMBConv, DynamicStage
from gtn_deploy.supernet.layers import (FirstBlock, StagedMixin, StudentNet, build_student,
                                        init_weights, make_head, make_stem)

__all__ = ["Supernet", "build_supernet", "build_student"]  # the mbconv family's torch side


class Supernet(StagedMixin, nn.Module):
    """Elastic MobileNetV3 for one space; ``forward`` runs the active architecture."""

    def __init__(self, space: SearchSpace, kernel_transform: bool = False):
        nn.Module.__init__(self)
        self.space = space
        self.kernel_transform = kernel_transform
        self.stem = make_stem(space)
        self.first = FirstBlock(space.channels(space.stem_channels),
                                space.channels(space.first_block_channels))
        stages, cin = [], space.channels(space.first_block_channels)
        for spec, cout in zip(space.stages, space.stage_widths()):
            blocks = []
            for j in range(space.max_depth):
                blocks.append(DynamicMBConv(
                    cin, cout, spec.stride if j == 0 else 1, spec.activation, spec.se,
                    space.kernel_choices, space.expand_choices, space.se_channels,
                    kernel_transform))
                cin = cout
            stages.append(DynamicStage(blocks))
        self.stages = nn.ModuleList(stages)
        self.head = make_head(space)
        init_weights(self)
        self.set_active(space.max_arch())

    # -- architectures -----------------------------------------------------------------------
    def sample(self, rng: random.Random) -> ArchConfig:
        """A random architecture of the space; the supernet is not changed."""
        return self.space.sample(rng)

    def max_arch(self) -> ArchConfig:
        return self.space.max_arch()

    def min_arch(self) -> ArchConfig:
        return self.space.min_arch()

    @property
    def active_arch(self) -> ArchConfig:
        return self._active

    def set_active(self, arch: ArchConfig) -> None:
        """Select the subnet ``forward`` runs (raises ArchError if it is not of the space)."""
        self.space.validate(arch)
        for stage, blocks in zip(self.stages, arch.stage_blocks()):
            stage.active_depth = len(blocks)
            for block, (kernel, expand) in zip(stage.blocks, blocks):
                block.set_active(kernel, expand)
        self._active = arch

    # -- extraction ------------------------------------------------------------------------------
    def active_state_dict(self, arch: ArchConfig | None = None) -> dict[str, torch.Tensor]:
        """The state dict of the static student of ``arch`` (default: the active arch)."""
        arch = self._active if arch is None else arch
        previous = self._active
        self.set_active(arch)
        try:
            return self._collect_state(StudentNet(self.space, arch))
        finally:
            self.set_active(previous)

    def _collect_state(self, student: StudentNet) -> dict[str, torch.Tensor]:
        source = self.state_dict(keep_vars=False)
        depthwise = {}
        for i, stage in enumerate(self.stages):
            for j in range(stage.active_depth):
                key = f"stages.{i}.blocks.{j}.depthwise.conv.weight"
                depthwise[key] = stage.blocks[j].active_depthwise_weight().detach()
        out = {}
        for key, ref in student.state_dict().items():
            tensor = depthwise[key] if key in depthwise else _slice_to(source[key], ref.shape)
            out[key] = tensor.detach().clone()
        return out

    @torch.no_grad()
    def extract(self, arch: ArchConfig | None = None) -> StudentNet:
        """A static student of ``arch`` (default: the active arch) with the weights copied.

        The student is a separate module (changing it leaves the supernet alone) in the
        supernet's train/eval mode; the active arch of the supernet is unchanged.
        """
        arch = self._active if arch is None else arch
        student = StudentNet(self.space, arch)
        student.load_state_dict(self.active_state_dict(arch), strict=True)
        return student.train(self.training)


def _slice_to(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Leading slice on channel dims, centre slice on the two kernel dims of a 4-D weight."""
    if tensor.shape == shape:
        return tensor
    index = []
    for dim, (have, want) in enumerate(zip(tensor.shape, shape)):
        start = (have - want) // 2 if tensor.dim() == 4 and dim >= 2 else 0
        index.append(slice(start, start + want))
    return tensor[tuple(index)]


def build_supernet(space: SearchSpace, kernel_transform: bool = False) -> Supernet:
    """The mbconv family's supernet (``supernet.families``)."""
    return Supernet(space, kernel_transform=kernel_transform)
