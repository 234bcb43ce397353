"""The elastic ResNet supernet and its static students (layout: ``gtn_deploy.spaces.resnet``).

Module names follow the cost model's layer names: ``stem``,
``stages.<i>.blocks.<j>.{reduce,conv,project,shortcut}``, ``head.{pool,classifier}``, so
ONNX node names (``/stages.1/blocks.0/...``) map back to blocks as for the MBConv family,
and a student's state dict is the supernet's with every tensor sliced to its first channels.
"""

from __future__ import annotations

import random
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from gtn_deploy.spaces.resnet import ResNetArch, ResNetSpace
from gtn_deploy.supernet.blocks import DynamicStage
from gtn_deploy.supernet.layers import ConvBNAct, Stage, StagedNet, init_weights
from gtn_deploy.supernet.ops import DynamicBatchNorm2d


# -- static student ----------------------------------------------------------------------------

def shortcut_pool(stride: int) -> nn.Module:
    """Once-for-All's ``avgpool_conv`` shortcut pools before its 1x1 conv. Ceil mode keeps
    an odd size's last row; with no padding the average is over the rows that exist, and
    ``count_include_pad=False`` says so to ONNX, whose ceil-mode overhang counts as padding."""
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(stride, stride, 0, ceil_mode=True, count_include_pad=False)


class PoolConvBN(nn.Sequential):
    """The ``avgpool_conv`` shortcut: ``pool``, 1x1 ``conv`` (no bias), ``bn``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(OrderedDict(pool=shortcut_pool(stride),
                                     conv=nn.Conv2d(cin, cout, 1, bias=False),
                                     bn=nn.BatchNorm2d(cout)))


class OFAStem(nn.Module):
    """Once-for-All ResNet50's stem: conv s2, conv + identity, conv, max pool s2."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.conv0 = ConvBNAct(cin, mid, 3, 2, act="relu")
        self.conv1 = ConvBNAct(mid, mid, 3, 1, act="relu")
        self.conv2 = ConvBNAct(mid, cout, 3, 1, act="relu")
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        return self.pool(self.conv2(self.conv1(x) + x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride), 1x1 up; a 1x1 conv shortcut (``avgpool``: pooled first)
    or the identity; add, ReLU."""

    def __init__(self, cin: int, cout: int, mid: int, stride: int, shortcut: bool,
                 avgpool: bool = False):
        super().__init__()
        self.reduce = ConvBNAct(cin, mid, 1, act="relu")
        self.conv = ConvBNAct(mid, mid, 3, stride, act="relu")
        self.project = ConvBNAct(mid, cout, 1)
        self.shortcut = None
        if shortcut:
            self.shortcut = PoolConvBN(cin, cout, stride) if avgpool else \
                ConvBNAct(cin, cout, 1, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv(self.reduce(x)))
        skip = self.shortcut(x) if self.shortcut is not None else x
        return self.act(out + skip)


class ResNetHead(nn.Module):
    """Global average pool and a linear classifier."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(x)))


class _StagedResNet(StagedNet):
    """The stage-wise API (``supernet.layers.StagedNet``): stage 0's input is the stem's."""

    space: ResNetSpace

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


def _stem(space: ResNetSpace) -> nn.Module:
    """Not elastic: the supernet and its students share the same module."""
    if space.stem_layout == "ofa":
        return OFAStem(space.task.in_channels, space.stem_mid, space.stem_channels)
    return ConvBNAct(space.task.in_channels, space.stem_channels, 3, space.stem_stride,
                     act="relu")


class ResNetStudent(_StagedResNet, nn.Module):
    """A static student: plain Conv2d/BN/ReLU/Linear, one fixed architecture."""

    def __init__(self, space: ResNetSpace, arch: ResNetArch):
        nn.Module.__init__(self)
        self.space = space
        self.arch = space.validate(arch)
        self.stem = _stem(space)
        stages, cin = [], space.stem_channels
        for spec, cout, expands in zip(space.stages, space.stage_widths(arch),
                                       arch.stage_expands()):
            blocks = [Bottleneck(cin if j == 0 else cout, cout, space.mid_channels(cout, e),
                                 spec.stride if j == 0 else 1, j == 0,
                                 space.shortcut == "avgpool_conv")
                      for j, e in enumerate(expands)]
            stages.append(Stage(blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = ResNetHead(cin, space.task.num_classes)

    def stage_in_channels(self, stage: int) -> int:
        """Channels entering ``stage`` (``num_stages`` means the head)."""
        return self.space.stem_channels if stage == 0 else \
            self.space.stage_widths(self.arch)[stage - 1]


def build_student(space: ResNetSpace, arch: ResNetArch) -> ResNetStudent:
    """A randomly initialised static student (same structure as ``ResNetSupernet.extract``)."""
    net = ResNetStudent(space, arch)
    init_weights(net)
    return net


# -- elastic supernet ----------------------------------------------------------------------------

class SlicedConv2d(nn.Module):
    """A convolution whose active weight is the first ``out`` x ``in`` channels of the
    largest one (the input width is the input's)."""

    def __init__(self, max_in: int, max_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.stride, self.padding = stride, kernel // 2
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        weight = self.weight[:out_channels, : x.size(1)]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class _ConvBN(nn.Module):
    """``conv``, ``bn`` [, ``act``] under the static ``ConvBNAct`` names, width per call."""

    def __init__(self, max_in: int, max_out: int, kernel: int, stride: int = 1,
                 act: bool = False, pool: int = 0):
        super().__init__()
        if pool:  # the avgpool_conv shortcut: pool by the stride, then a 1x1 conv
            self.pool = shortcut_pool(pool)
        self.conv = SlicedConv2d(max_in, max_out, kernel, stride)
        self.bn = DynamicBatchNorm2d(max_out)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        if hasattr(self, "pool"):
            x = self.pool(x)
        return self.act(self.bn(self.conv(x, out_channels)))


class DynamicBottleneck(nn.Module):
    """A bottleneck whose output width and hidden width are set by ``set_active``."""

    def __init__(self, max_in: int, max_out: int, max_mid: int, stride: int, shortcut: bool,
                 avgpool: bool = False):
        super().__init__()
        self.reduce = _ConvBN(max_in, max_mid, 1, act=True)
        self.conv = _ConvBN(max_mid, max_mid, 3, stride, act=True)
        self.project = _ConvBN(max_mid, max_out, 1)
        self.shortcut = None
        if shortcut:
            self.shortcut = _ConvBN(max_in, max_out, 1, pool=stride) if avgpool else \
                _ConvBN(max_in, max_out, 1, stride)
        self.act = nn.ReLU(inplace=True)
        self.set_active(max_out, max_mid)

    def set_active(self, out_channels: int, mid: int) -> None:
        self.active_out, self.active_mid = out_channels, mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.reduce(x, self.active_mid), self.active_mid)
        out = self.project(out, self.active_out)
        skip = self.shortcut(x, self.active_out) if self.shortcut is not None else x
        return self.act(out + skip)


class DynamicHead(nn.Module):
    """Pool and a classifier over the first input features of the largest one."""

    def __init__(self, max_in: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(max_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(x))
        return F.linear(x, self.classifier.weight[:, : x.size(1)], self.classifier.bias)


class ResNetSupernet(_StagedResNet, nn.Module):
    """Elastic ResNet for one space; ``forward`` runs the active architecture.

    API as ``supernet.Supernet``: ``sample(rng)`` changes nothing, ``set_active(arch)``
    selects the subnet, ``extract(arch)`` returns a static student with the weights copied.
    """

    def __init__(self, space: ResNetSpace):
        nn.Module.__init__(self)
        self.space = space
        self.stem = _stem(space)
        stages, cin = [], space.stem_channels
        for i, (spec, cout) in enumerate(zip(space.stages, space.max_stage_widths())):
            mid = space.max_mid(i)
            stages.append(DynamicStage([
                DynamicBottleneck(cin if j == 0 else cout, cout, mid,
                                  spec.stride if j == 0 else 1, j == 0,
                                  space.shortcut == "avgpool_conv")
                for j in range(space.max_depth(i))]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.head = DynamicHead(cin, space.task.num_classes)
        init_weights(self)  # SlicedConv2d initialises itself the same way
        self.set_active(space.max_arch())

    def sample(self, rng: random.Random) -> ResNetArch:
        """A random architecture of the space; the supernet is not changed."""
        return self.space.sample(rng)

    @property
    def active_arch(self) -> ResNetArch:
        return self._active

    def set_active(self, arch: ResNetArch) -> None:
        """Select the subnet ``forward`` runs (raises ArchError if it is not of the space)."""
        self.space.validate(arch)
        widths = self.space.stage_widths(arch)
        for stage, width, expands in zip(self.stages, widths, arch.stage_expands()):
            stage.active_depth = len(expands)
            for block, e in zip(stage.blocks, expands):
                block.set_active(width, self.space.mid_channels(width, e))
        self._active = arch

    def stage_in_channels(self, stage: int) -> int:
        """Channels entering ``stage`` in the active subnet (``num_stages``: the head)."""
        return self.space.stem_channels if stage == 0 else \
            self.space.stage_widths(self._active)[stage - 1]

    def max_stage_in_channels(self, stage: int) -> int:
        """The most channels that can enter ``stage`` (its input at the widest choice)."""
        return self.space.stem_channels if stage == 0 else \
            self.space.max_stage_widths()[stage - 1]

    def active_state_dict(self, arch: ResNetArch | None = None) -> dict[str, torch.Tensor]:
        """The state dict of the static student of ``arch`` (default: the active arch)."""
        arch = self._active if arch is None else arch
        source = self.state_dict()
        return {key: _leading(source[key], ref.shape).detach().clone()
                for key, ref in ResNetStudent(self.space, arch).state_dict().items()}

    @torch.no_grad()
    def extract(self, arch: ResNetArch | None = None) -> ResNetStudent:
        """A static student of ``arch`` (default: the active arch) with the weights copied,
        in the supernet's train/eval mode; the supernet's active arch is unchanged."""
        arch = self._active if arch is None else arch
        student = ResNetStudent(self.space, arch)
        student.load_state_dict(self.active_state_dict(arch), strict=True)
        return student.train(self.training)


def _leading(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first channels of every dim (kernels are not elastic here)."""
    return tensor[tuple(slice(0, n) for n in shape)] if tensor.shape != shape else tensor


def build_supernet(space: ResNetSpace, kernel_transform: bool = False) -> ResNetSupernet:
    """The resnet family's supernet (``supernet.families``; ``kernel_transform`` is
    MBConv's and does not apply)."""
    return ResNetSupernet(space)
