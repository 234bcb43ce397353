"""An elastic ResNet family (Once-for-All's OFAResNets, scaled to small images; no torch).

A ``ResNetArch`` picks, per stage, a depth and a width multiplier, and per active block an
expand ratio. A ``ResNetSpace`` is the fixed skeleton and the choices for one task.

Network layout (shared with ``supernet.resnet``; they must agree exactly):

    stem      conv 3x3, stride ``stem_stride``, ``stem_channels``, BN, ReLU (not elastic)
    stage i   ``depth`` bottleneck blocks of width ``w = make_divisible(width * mult)``:
              1x1 reduce to ``mid = make_divisible(round(w * expand))`` + BN + ReLU ->
              3x3 (stride on the first block) + BN + ReLU -> 1x1 up to ``w`` + BN;
              plus the shortcut: a 1x1 conv (that stride) + BN on each stage's first block
              (it changes the width or the size), the identity on the others; add, ReLU
    head      global average pool, linear classifier (bias)

The ``imagenet`` space is Once-for-All's ResNet50 (``ofa_resnet50``) as published, with two
layout switches: its stem (``stem_layout="ofa"``: 3x3 conv stride 2 to ``stem_mid`` + BN +
ReLU, 3x3 conv + BN + ReLU with an identity residual, 3x3 conv to ``stem_channels`` + BN +
ReLU, 3x3 max pool stride 2; ``stem_stride`` is then 4) and its shortcut
(``shortcut="avgpool_conv"``: a 2x2 average pool of the stride, ceil mode, before a 1x1
conv). OFA's stem width and depth are elastic too; here the stem is fixed at its largest.

Convolutions have no bias. Elastic depth keeps a stage's first blocks (as Once-for-All);
elastic width and expand ratio keep the first channels of the largest weights.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from gtn_deploy.arch import TASKS, TaskSpec
from gtn_deploy.errors import ArchError, UsageError
from gtn_deploy.spaces.base import (BlockCost, BlockShape, Layer, NetCost, arch_json,
                                    check_arch_keys, conv_out, make_divisible, net_cost)


@dataclass(frozen=True)
class ResNetArch:
    """One subnet: a depth and width multiplier per stage, an expand ratio per active block."""

    depths: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    width_mults: tuple[float, ...]
    resolution: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(int(v) for v in self.depths))
        for name in ("expand_ratios", "width_mults"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "resolution", int(self.resolution))

    def stage_expands(self) -> list[tuple[float, ...]]:
        """Per stage, the expand ratio of each active block."""
        out, i = [], 0
        for d in self.depths:
            out.append(self.expand_ratios[i:i + d])
            i += d
        return out

    @classmethod
    def from_stages(cls, expands: list[tuple[float, ...]], width_mults: tuple[float, ...],
                    resolution: int) -> "ResNetArch":
        return cls(tuple(len(s) for s in expands), tuple(e for s in expands for e in s),
                   tuple(width_mults), resolution)

    def summary(self) -> str:
        """Compact human form, ratios in percent: ``r28 d1-2-3-1 w65-80-100-100 e20|25,35|..``."""
        es = "|".join(",".join(map(_pct, s)) for s in self.stage_expands())
        return (f"r{self.resolution} d{'-'.join(map(str, self.depths))} "
                f"w{'-'.join(map(_pct, self.width_mults))} e{es}")

    def decisions(self) -> tuple[tuple[str, float], ...]:
        """Every decision by name (``d0``, ``w0``, ``s0.b1.e``, ..., ``r``), in a fixed order."""
        out: list[tuple[str, float]] = []
        for stage, (d, w, es) in enumerate(zip(self.depths, self.width_mults,
                                               self.stage_expands())):
            out += [(f"d{stage}", d), (f"w{stage}", w)]
            out += [(f"s{stage}.b{j}.e", e) for j, e in enumerate(es)]
        return tuple(out + [("r", self.resolution)])

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"family": "resnet", "depths": list(self.depths),
                "expand_ratios": list(self.expand_ratios),
                "width_mults": list(self.width_mults), "resolution": self.resolution}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "arch") -> "ResNetArch":
        check_arch_keys(data, {"depths", "expand_ratios", "width_mults", "resolution"},
                        {"family"}, where)
        if data.get("family", "resnet") != "resnet":
            raise ArchError(f"{where}: family '{data['family']}' is not 'resnet'")
        values = {}
        for key, kind in (("depths", int), ("expand_ratios", float), ("width_mults", float)):
            value = data[key]
            if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
                raise ArchError(f"{where}: '{key}' must be a list of numbers, got {value!r}")
            values[key] = tuple(kind(v) for v in value)
        if not _is_number(data["resolution"]):
            raise ArchError(f"{where}: 'resolution' must be a number, got "
                            f"{data['resolution']!r}")
        return cls(values["depths"], values["expand_ratios"], values["width_mults"],
                   int(data["resolution"]))

    @classmethod
    def from_json(cls, text: str, where: str = "arch") -> "ResNetArch":
        return cls.from_dict(arch_json(text, where), where)


def _pct(value: float) -> str:
    return str(round(value * 100))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True)
class ResNetStage:
    width: int       # output channels at width multiplier 1.0
    stride: int      # of the stage's first block
    base_depth: int  # depth choices are base_depth + the space's depth_deltas


@dataclass(frozen=True)
class ResNetSpace:
    """The fixed skeleton and the elastic choices of one elastic ResNet supernet."""

    name: str
    task: TaskSpec
    stem_channels: int
    stem_stride: int
    stages: tuple[ResNetStage, ...]
    depth_deltas: tuple[int, ...]
    expand_choices: tuple[float, ...]
    width_choices: tuple[float, ...]
    resolutions: tuple[int, ...]
    stem_layout: str = "conv"  # "conv" | "ofa" (see the module docstring)
    stem_mid: int = 0  # the OFA stem's first two convs' width
    shortcut: str = "conv"  # "conv" | "avgpool_conv"
    family: ClassVar[str] = "resnet"

    # -- derived sizes -------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def depth_choices(self, stage: int) -> tuple[int, ...]:
        return tuple(self.stages[stage].base_depth + d for d in self.depth_deltas)

    def max_depth(self, stage: int) -> int:
        return max(self.depth_choices(stage))

    def stage_width(self, stage: int, mult: float) -> int:
        return make_divisible(self.stages[stage].width * mult)

    def stage_widths(self, arch: ResNetArch) -> tuple[int, ...]:
        return tuple(self.stage_width(i, w) for i, w in enumerate(arch.width_mults))

    def max_stage_widths(self) -> tuple[int, ...]:
        return tuple(max(self.stage_width(i, w) for w in self.width_choices)
                     for i in range(self.num_stages))

    @staticmethod
    def mid_channels(width: int, expand: float) -> int:
        """Hidden width of a bottleneck (Once-for-All: make_divisible(round(out * e)))."""
        return make_divisible(round(width * expand))

    def max_mid(self, stage: int) -> int:
        return max(self.mid_channels(self.stage_width(stage, w), e)
                   for w in self.width_choices for e in self.expand_choices)

    def decision_choices(self) -> tuple[tuple[str, tuple], ...]:
        """Every decision any arch can make (all block slots), with its choices."""
        out: list[tuple[str, tuple]] = []
        for stage in range(self.num_stages):
            out += [(f"d{stage}", self.depth_choices(stage)), (f"w{stage}", self.width_choices)]
            out += [(f"s{stage}.b{j}.e", self.expand_choices)
                    for j in range(self.max_depth(stage))]
        return tuple(out + [("r", self.resolutions)])

    def arch_from_decisions(self, values: dict[str, Any]) -> ResNetArch:
        """The arch that ``values`` (a choice for every decision) selects; slots past a
        stage's depth are ignored."""
        expands = [tuple(values[f"s{s}.b{j}.e"] for j in range(values[f"d{s}"]))
                   for s in range(self.num_stages)]
        return ResNetArch.from_stages(expands, tuple(values[f"w{s}"]
                                                     for s in range(self.num_stages)),
                                      values["r"])

    # -- canonical members -------------------------------------------------------------------
    def max_arch(self) -> ResNetArch:
        return self._uniform(max, max(self.resolutions))

    def min_arch(self) -> ResNetArch:
        return self._uniform(min, min(self.resolutions))

    def _uniform(self, pick, resolution: int) -> ResNetArch:
        depths = tuple(pick(self.depth_choices(i)) for i in range(self.num_stages))
        return ResNetArch(depths, (pick(self.expand_choices),) * sum(depths),
                          (pick(self.width_choices),) * self.num_stages, resolution)

    def size(self) -> int:
        """Number of distinct architectures."""
        n = len(self.resolutions)
        for stage in range(self.num_stages):
            per_depth = sum(len(self.expand_choices) ** d for d in self.depth_choices(stage))
            n *= len(self.width_choices) * per_depth
        return n

    # -- random members (the space is never changed) ---------------------------------------------
    def sample(self, rng: random.Random) -> ResNetArch:
        expands, widths = [], []
        for stage in range(self.num_stages):
            depth = rng.choice(self.depth_choices(stage))
            widths.append(rng.choice(self.width_choices))
            expands.append(tuple(rng.choice(self.expand_choices) for _ in range(depth)))
        return ResNetArch.from_stages(expands, tuple(widths), rng.choice(self.resolutions))

    def mutate(self, arch: ResNetArch, rng: random.Random, prob: float) -> ResNetArch:
        """Resample each decision with probability ``prob`` (Once-for-All mutation)."""
        def maybe(value, choices):
            return rng.choice(choices) if rng.random() < prob else value

        expands, widths = [], []
        for stage, old in enumerate(arch.stage_expands()):
            depth = maybe(len(old), self.depth_choices(stage))
            widths.append(maybe(arch.width_mults[stage], self.width_choices))
            grown = list(old[:depth]) + [rng.choice(self.expand_choices)
                                         for _ in range(depth - len(old))]
            expands.append(tuple(maybe(e, self.expand_choices) for e in grown))
        return ResNetArch.from_stages(expands, tuple(widths),
                                      maybe(arch.resolution, self.resolutions))

    def crossover(self, a: ResNetArch, b: ResNetArch, rng: random.Random) -> ResNetArch:
        """Take each decision from one parent at random (Once-for-All crossover)."""
        expands, widths = [], []
        for stage, (ea, eb) in enumerate(zip(a.stage_expands(), b.stage_expands())):
            depth = rng.choice((len(ea), len(eb)))
            widths.append(rng.choice((a.width_mults[stage], b.width_mults[stage])))
            expands.append(tuple(rng.choice([s[j] for s in (ea, eb) if j < len(s)])
                                 for j in range(depth)))
        return ResNetArch.from_stages(expands, tuple(widths),
                                      rng.choice((a.resolution, b.resolution)))

    # -- validation and JSON ---------------------------------------------------------------------
    def validate(self, arch: Any) -> ResNetArch:
        """Return ``arch`` if it belongs to this space, else raise ArchError saying why."""
        def bad(msg: str) -> ArchError:
            return ArchError(f"architecture does not fit space '{self.name}': {msg}")

        if not isinstance(arch, ResNetArch):
            raise bad(f"a {type(arch).__name__}, not a ResNetArch")
        if len(arch.depths) != self.num_stages or len(arch.width_mults) != self.num_stages:
            raise bad(f"{len(arch.depths)} depths and {len(arch.width_mults)} width "
                      f"multipliers, the space has {self.num_stages} stages")
        for stage, (d, w) in enumerate(zip(arch.depths, arch.width_mults)):
            if d not in self.depth_choices(stage):
                raise bad(f"stage {stage} depth {d} not in {list(self.depth_choices(stage))}")
            if w not in self.width_choices:
                raise bad(f"stage {stage} width multiplier {w} not in "
                          f"{list(self.width_choices)}")
        if len(arch.expand_ratios) != sum(arch.depths):
            raise bad(f"depths sum to {sum(arch.depths)} blocks but got "
                      f"{len(arch.expand_ratios)} expand ratios")
        for e in arch.expand_ratios:
            if e not in self.expand_choices:
                raise bad(f"expand ratio {e} not in {list(self.expand_choices)}")
        if arch.resolution not in self.resolutions:
            raise bad(f"resolution {arch.resolution} not in {list(self.resolutions)}")
        return arch

    # -- its cost, in spaces.base's types (the cost model asks the space) -------------------
    def network_costs(self, arch: ResNetArch) -> tuple[BlockCost, ...]:
        return network_costs(self, arch)

    def network_layers(self, arch: ResNetArch) -> tuple[Layer, ...]:
        return network_layers(self, arch)

    def network_cost(self, arch: ResNetArch) -> NetCost:
        return network_cost(self, arch)

    def block_keys(self, arch: ResNetArch) -> list[tuple[str, str]]:
        return block_keys(self, arch)

    def arch_from_dict(self, data: dict[str, Any], where: str = "arch") -> ResNetArch:
        """Parse and validate an arch of this space."""
        return self.validate(ResNetArch.from_dict(data, where))

    def with_classes(self, num_classes: int) -> "ResNetSpace":
        """The same space for another number of classes."""
        return dataclasses.replace(self, task=dataclasses.replace(self.task,
                                                                  num_classes=num_classes))

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, **dataclasses.asdict(self)}


# -- the registered spaces --------------------------------------------------------------------

_SMALL_STAGES = (  # 28x28 -> 28 -> 14 -> 7 -> 4; 32x32 -> 32 -> 16 -> 8 -> 4
    ResNetStage(32, 1, 1),
    ResNetStage(64, 2, 1),
    ResNetStage(128, 2, 2),
    ResNetStage(256, 2, 1),
)


def _small_space(task: TaskSpec, resolution: int) -> ResNetSpace:
    return ResNetSpace(
        name=f"resnet-{task.name}", task=task, stem_channels=16, stem_stride=1,
        stages=_SMALL_STAGES, depth_deltas=(0, 1, 2), expand_choices=(0.2, 0.25, 0.35),
        width_choices=(0.65, 0.8, 1.0), resolutions=(resolution,),
    )


RESNET_SPACES: dict[str, ResNetSpace] = {
    "fashion-mnist": _small_space(TASKS["fashion-mnist"], 28),
    "digits": _small_space(TASKS["digits"], 28),
    "cifar10": _small_space(TASKS["cifar10"], 32),
    "cifar100": _small_space(TASKS["cifar100"], 32),
    "imagenet": ResNetSpace(  # Once-for-All's ofa_resnet50 (d 0/1/2, e .2/.25/.35, w .65/.8/1)
        name="resnet-imagenet", task=TASKS["imagenet"], stem_channels=64, stem_stride=4,
        stages=(ResNetStage(256, 1, 2), ResNetStage(512, 2, 2), ResNetStage(1024, 2, 4),
                ResNetStage(2048, 2, 2)),
        depth_deltas=(0, 1, 2), expand_choices=(0.2, 0.25, 0.35),
        width_choices=(0.65, 0.8, 1.0), resolutions=tuple(range(128, 225, 4)),
        stem_layout="ofa", stem_mid=32, shortcut="avgpool_conv"),
}


def resnet_space(task: str) -> ResNetSpace:
    """The elastic ResNet space of a task, by name."""
    try:
        return RESNET_SPACES[task]
    except KeyError:
        raise UsageError(f"no resnet space for task '{task}'; valid tasks: "
                         f"{', '.join(RESNET_SPACES)}") from None


# -- analytic cost (the layout above, in spaces.base's types and counting rules) -------------------

def network_blocks(space: ResNetSpace, arch: ResNetArch) -> tuple[BlockShape, ...]:
    """Every block of ``arch`` with its shapes, in execution order.

    ``kernel`` is the middle conv's (3); a block has a conv shortcut iff ``index == 0``.
    """
    res, cin = arch.resolution, space.stem_channels
    h = conv_out(res, space.stem_stride)  # the OFA stem's two stride-2 steps make 4
    stem = "stem" if space.stem_layout == "conv" else "ofa_stem"
    blocks = [BlockShape("stem", stem, -1, 0, space.task.in_channels, cin,
                         space.stem_mid or cin, 3, space.stem_stride, res, h, 0, "relu")]
    kind = "bottleneck" if space.shortcut == "conv" else "bottleneck_avgpool"
    for stage, (spec, expands) in enumerate(zip(space.stages, arch.stage_expands())):
        cout = space.stage_width(stage, arch.width_mults[stage])
        for index, expand in enumerate(expands):
            stride = spec.stride if index == 0 else 1
            hout = conv_out(h, stride)
            blocks.append(BlockShape(f"s{stage}.b{index}", kind, stage, index, cin,
                                     cout, space.mid_channels(cout, expand), 3, stride, h,
                                     hout, 0, "relu"))
            cin, h = cout, hout
    blocks.append(BlockShape("head", "head", -1, 0, cin, cin, cin, 1, 1, h, 1, 0, "relu", 0,
                             space.task.num_classes))
    return tuple(blocks)


def block_key(shape: BlockShape) -> str:
    """Lookup-table key of a block; ``resnet-`` keeps it apart from the MBConv keys."""
    b = shape
    key = f"resnet-{b.kind}-in:{b.hin}x{b.hin}x{b.cin}-out:{b.hout}x{b.hout}x{b.cout}"
    if b.kind.startswith("bottleneck"):
        key += f"-mid:{b.mid}-k:{b.kernel}-s:{b.stride}-shortcut:{int(b.index == 0)}"
    return key + (f"-classes:{b.classes}" if b.kind == "head" else "")


def block_keys(space: ResNetSpace, arch: ResNetArch) -> list[tuple[str, str]]:
    """(block name, lookup-table key) per block of ``arch``."""
    return [(b.name, block_key(b)) for b in network_blocks(space, arch)]


def _conv(name: str, op_class: str, block: str, cin: int, cout: int, k: int, hin: int,
          stride: int) -> Layer:
    """A conv (no bias) + BN; FLOPs are 2 per multiply-accumulate, as FlopCounterMode."""
    hout = conv_out(hin, stride)
    weights = cout * cin * k * k
    return Layer(name, op_class, block, 2 * weights * hout * hout, weights + 2 * cout,
                 cin * hin * hin, cout * hout * hout)


def _stem(b: BlockShape) -> list[Layer]:
    return [_conv("stem", "conv", "stem", b.cin, b.cout, 3, b.hin, b.stride)]


def _ofa_stem(b: BlockShape) -> list[Layer]:
    """conv s2, conv + identity, conv, 3x3 max pool s2 (module names ``stem.<part>``)."""
    h = conv_out(b.hin, 2)
    mid = b.mid * h * h
    return [_conv("stem.conv0", "conv", "stem", b.cin, b.mid, 3, b.hin, 2),
            _conv("stem.conv1", "conv", "stem", b.mid, b.mid, 3, h, 1),
            Layer("stem.add", "elementwise", "stem", 0, 0, 2 * mid, mid),
            _conv("stem.conv2", "conv", "stem", b.mid, b.cout, 3, h, 1),
            Layer("stem.pool", "pool", "stem", 0, 0, b.cout * h * h, b.cout * b.hout * b.hout)]


def _bottleneck(b: BlockShape) -> list[Layer]:
    p, name = f"stages.{b.stage}.blocks.{b.index}", b.name
    layers = [_conv(f"{p}.reduce", "pointwise", name, b.cin, b.mid, 1, b.hin, 1),
              _conv(f"{p}.conv", "conv", name, b.mid, b.mid, b.kernel, b.hin, b.stride),
              _conv(f"{p}.project", "pointwise", name, b.mid, b.cout, 1, b.hout, 1)]
    if b.index == 0 and b.kind == "bottleneck_avgpool":  # pool first: the conv runs small
        if b.stride > 1:
            layers.append(Layer(f"{p}.shortcut.pool", "pool", name, 0, 0, b.cin * b.hin ** 2,
                                b.cin * b.hout ** 2))
        layers.append(_conv(f"{p}.shortcut", "pointwise", name, b.cin, b.cout, 1, b.hout, 1))
    elif b.index == 0:
        layers.append(_conv(f"{p}.shortcut", "pointwise", name, b.cin, b.cout, 1, b.hin,
                            b.stride))
    out = b.cout * b.hout * b.hout
    return layers + [Layer(f"{p}.add", "elementwise", name, 0, 0, 2 * out, out)]


def _head(b: BlockShape) -> list[Layer]:
    c = b.cin
    # The classifier has a bias; FlopCounterMode does not count the bias add.
    return [Layer("head.pool", "pool", "head", 0, 0, c * b.hin * b.hin, c),
            Layer("head.classifier", "linear", "head", 2 * c * b.classes,
                  c * b.classes + b.classes, c, b.classes)]


_BUILDERS = {"stem": _stem, "ofa_stem": _ofa_stem, "bottleneck": _bottleneck,
             "bottleneck_avgpool": _bottleneck, "head": _head}


def _block_peak(layers: tuple[Layer, ...], shape: BlockShape) -> int:
    """Largest live activation set in a block, per image (``spaces.mbconv``'s rule): a layer's
    input and output, plus what the residual holds: the block input while the main branch
    runs, the main branch's output while the shortcut conv runs."""
    if not shape.kind.startswith("bottleneck"):
        return max(x.in_elems + x.out_elems for x in layers)
    held_in = shape.cin * shape.hin * shape.hin
    held_out = shape.cout * shape.hout * shape.hout
    peak = 0
    for x in layers:
        held = 0 if x.op_class == "elementwise" else held_in
        if ".shortcut" in x.name:  # its pool too: the main branch output is held
            held = held_out
        peak = max(peak, x.in_elems + x.out_elems + held)
    return peak


@functools.lru_cache(maxsize=65536)
def block_cost(shape: BlockShape) -> BlockCost:
    """Layers and totals of one block; cached because search revisits blocks constantly."""
    layers = tuple(_BUILDERS[shape.kind](shape))
    return BlockCost(shape, layers, sum(x.params for x in layers), sum(x.flops for x in layers),
                     _block_peak(layers, shape))


def network_costs(space: ResNetSpace, arch: ResNetArch) -> tuple[BlockCost, ...]:
    """Per-block costs of ``arch`` (no validation: call space.validate first)."""
    return tuple(block_cost(b) for b in network_blocks(space, arch))


def network_layers(space: ResNetSpace, arch: ResNetArch) -> tuple[Layer, ...]:
    """Every layer of ``arch`` in execution order."""
    return tuple(layer for block in network_costs(space, arch) for layer in block.layers)


def network_cost(space: ResNetSpace, arch: ResNetArch) -> NetCost:
    """Totals and the per-layer breakdown of ``arch``."""
    return net_cost(network_costs(space, arch))
