"""Static layers of a student (plain torch modules) and ``build_student``.

Module names follow the cost model's layer names (``gtn_deploy.spaces.mbconv``'s cost):
``stem``, ``first``, ``stages.<i>.blocks.<j>.{expand,depthwise,se,project}``,
``head.{conv,pool,feature,classifier}``; ONNX node names (``/stages.1/blocks.0/...``) map
back to blocks through them. The supernet (``network.Supernet``) reuses ``stem``, ``first``
and ``head`` as they are and mirrors the block names, so an extracted student's state dict
is the supernet's, sliced.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from gtn_deploy.spaces.base import make_divisible
from gtn_deploy.spaces.mbconv import ArchConfig, SearchSpace


def make_act(name: str) -> nn.Module:
    """The module for an activation name of the space (``relu`` | ``hswish``)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation '{name}'")


def mid_channels(in_channels: int, expand_ratio: int) -> int:
    """Hidden width of an MBConv block (Once-for-All: make_divisible(in * e, 8))."""
    return make_divisible(in_channels * expand_ratio)


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN [-> act]; children named ``conv``, ``bn``, ``act``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None):
        layers = OrderedDict(
            conv=nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout),
        )
        if act is not None:
            layers["act"] = make_act(act)
        super().__init__(layers)


class SqueezeExcite(nn.Module):
    """Once-for-All SE: avg pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> h-sigmoid."""

    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, se_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(se_channels, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class FirstBlock(nn.Module):
    """Depthwise 3x3 + BN + ReLU, pointwise + BN; residual when the widths match."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = ConvBNAct(cin, cin, 3, 1, groups=cin, act="relu")
        self.project = ConvBNAct(cin, cout, 1)
        self.residual = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(x))
        return out + x if self.residual else out


class MBConv(nn.Module):
    """MobileNetV3 inverted residual with fixed kernel and expand ratio."""

    def __init__(self, cin: int, cout: int, kernel: int, expand_ratio: int, stride: int,
                 act: str, se_channels: int | None):
        super().__init__()
        mid = mid_channels(cin, expand_ratio)
        # Expand ratio 1 has no expand conv (the width is already the hidden width).
        self.expand = ConvBNAct(cin, mid, 1, act=act) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, se_channels) if se_channels else None
        self.project = ConvBNAct(mid, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expand is not None else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.residual else out


class Stage(nn.Module):
    """A sequence of blocks; ``blocks`` keeps the ``stages.<i>.blocks.<j>`` names."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Head(nn.Module):
    """1x1 conv + BN + h-swish, global pool, [feature linear + h-swish], classifier."""

    def __init__(self, cin: int, head_channels: int, feature_channels: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNAct(cin, head_channels, 1, act="hswish")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        width = head_channels
        self.feature: nn.Module | None = None
        self.feature_act: nn.Module | None = None
        if feature_channels:
            self.feature = nn.Linear(head_channels, feature_channels)
            self.feature_act = nn.Hardswish(inplace=True)
            width = feature_channels
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.conv(x)))
        if self.feature is not None:
            x = self.feature_act(self.feature(x))
        return self.classifier(x)


class StagedNet:
    """The stage-wise API of every family's supernet and static students (GTN branches and
    feature distillation enter and leave the network between stages).

    Subclasses define ``space`` (with ``stem_stride`` and ``stages[i].stride``), ``stages``,
    ``head`` and ``stem_forward``, the input of stage 0.
    """

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_from(self, h: torch.Tensor, stage: int) -> torch.Tensor:
        """Run stages ``stage..`` and the head on ``h`` (the input of that stage)."""
        if not 0 <= stage <= len(self.stages):
            raise ValueError(f"stage {stage} out of range 0..{len(self.stages)}")
        for module in list(self.stages)[stage:]:
            h = module(h)
        return self.head(h)

    def forward_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(output of every stage, logits)."""
        h = self.stem_forward(x)
        feats = []
        for module in self.stages:
            h = module(h)
            feats.append(h)
        return feats, self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(self.stem_forward(x), 0)

    def stage_in_stride(self, stage: int) -> int:
        """Total downsampling of the image at the input of ``stage``."""
        stride = self.space.stem_stride
        for spec in self.space.stages[:stage]:
            stride *= spec.stride
        return stride


class StagedMixin(StagedNet):
    """The stage-wise API of the mbconv supernet and its static students.

    Subclasses define ``space``, ``stem``, ``first``, ``stages`` and ``head``.
    """

    space: SearchSpace

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and first block: the input of stage 0."""
        return self.first(self.stem(x))

    def stage_in_channels(self, stage: int) -> int:
        """Channels entering ``stage`` (``num_stages`` means the head)."""
        if stage == 0:
            return self.space.channels(self.space.first_block_channels)
        return self.space.stage_widths()[stage - 1]

    def max_stage_in_channels(self, stage: int) -> int:
        """The most channels that can enter ``stage`` (MBConv widths are not elastic)."""
        return self.stage_in_channels(stage)

    @property
    def stage_channels(self) -> list[int]:
        return list(self.space.stage_widths())

    @property
    def stage_strides(self) -> list[int]:
        return [self.stage_in_stride(i + 1) for i in range(self.space.num_stages)]


def make_stem(space: SearchSpace) -> ConvBNAct:
    return ConvBNAct(space.task.in_channels, space.channels(space.stem_channels), 3,
                     space.stem_stride,
                     act="hswish")


def make_head(space: SearchSpace) -> Head:
    return Head(space.stage_widths()[-1], space.head_channels, space.feature_channels,
                space.task.num_classes)


def init_weights(module: nn.Module) -> None:
    """Once-for-All initialisation: He (fan out) convs, unit BN, small linears.

    The supernet's dynamic convolutions initialise themselves the same way.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class StudentNet(StagedMixin, nn.Module):
    """A static student: plain torch layers, one fixed architecture."""

    def __init__(self, space: SearchSpace, arch: ArchConfig):
        nn.Module.__init__(self)
        self.space = space
        self.arch = space.validate(arch)
        self.stem = make_stem(space)
        self.first = FirstBlock(space.channels(space.stem_channels),
                                space.channels(space.first_block_channels))
        stages, cin = [], space.channels(space.first_block_channels)
        for spec, cout, blocks in zip(space.stages, space.stage_widths(), arch.stage_blocks()):
            built = []
            for j, (k, e) in enumerate(blocks):
                se = space.se_channels(mid_channels(cin, e)) if spec.se else None
                built.append(MBConv(cin, cout, k, e, spec.stride if j == 0 else 1,
                                    spec.activation, se))
                cin = cout
            stages.append(Stage(built))
        self.stages = nn.ModuleList(stages)
        self.head = make_head(space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # ONNX export traces this
        return self.forward_from(self.stem_forward(x), 0)


def build_student(space: SearchSpace, arch: ArchConfig) -> StudentNet:
    """A randomly initialised static student (same structure as ``Supernet.extract``)."""
    net = StudentNet(space, arch)
    init_weights(net)
    return net
