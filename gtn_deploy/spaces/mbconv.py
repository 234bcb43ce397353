"""The mbconv family: Once-for-All MobileNetV3 spaces, their archs and their cost (no torch).

An ``ArchConfig`` is one student of the weight-sharing supernet: a depth per stage, a kernel
size and expand ratio per *active* block, and an input resolution. A ``SearchSpace`` is the
fixed skeleton of an Once-for-All MobileNetV3 supernet for one task (channels, strides,
activations, squeeze-excite, stem and head) plus the elastic choices.

Network layout (shared with ``supernet.network``/``supernet.layers``; they must agree
exactly; the cost builders at the end of this module count it):

    stem      conv kxk=3, stride ``stem_stride``, ``stem_channels``, BN, h-swish
    first     depthwise 3x3 + BN + ReLU, pointwise to ``first_block_channels`` + BN
              (expand 1, no SE), residual when the widths match
    stage i   ``depth`` MBConv blocks: [1x1 expand + BN + act] -> kxk depthwise (stride on
              the first block) + BN + act -> [SE] -> 1x1 project + BN; residual when
              stride 1 and widths match
    head      1x1 conv to ``head_channels`` + BN + h-swish, global average pool,
              [linear (bias) to ``feature_channels`` + h-swish: OFA's feature mix],
              linear classifier (bias)

    Squeeze-excite (OFA): global pool -> 1x1 conv (bias) to ``se_channels(mid)`` -> ReLU ->
    1x1 conv (bias) back to mid -> h-sigmoid -> multiply. The mid width of a block is
    ``make_divisible(round(in_channels * expand_ratio))``. Other convs have no bias.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

from gtn_deploy.arch import TASKS, TaskSpec
from gtn_deploy.errors import ArchError, UsageError
from gtn_deploy.spaces.base import (BlockCost, BlockShape, Layer, NetCost, arch_json,
                                    check_arch_keys, conv_out, make_divisible, net_cost,
                                    short_list)


@dataclass(frozen=True)
class StageSpec:
    width: int
    stride: int
    activation: str
    se: bool


@dataclass(frozen=True)
class SearchSpace:
    """The fixed skeleton and the elastic choices of one supernet."""

    name: str
    task: TaskSpec
    stem_channels: int
    stem_stride: int
    first_block_channels: int
    stages: tuple[StageSpec, ...]
    head_channels: int
    feature_channels: int  # 0: no feature-mix linear before the classifier
    depth_choices: tuple[int, ...]
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    resolutions: tuple[int, ...]
    width_mult: float = 1.0
    se_reduction: int = 4
    family: ClassVar[str] = "mbconv"  # the registry's name (gtn_deploy.spaces)

    def arch_from_dict(self, data: dict[str, Any], where: str = "arch") -> "ArchConfig":
        return ArchConfig.from_dict(data, where)

    # -- derived sizes -------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    def channels(self, width: int) -> int:
        return make_divisible(width * self.width_mult)

    def stage_widths(self) -> tuple[int, ...]:
        return tuple(self.channels(s.width) for s in self.stages)

    def se_channels(self, mid: int) -> int:
        return make_divisible(mid // self.se_reduction)

    # -- canonical members -------------------------------------------------------------
    def max_arch(self) -> "ArchConfig":
        return self._uniform(max(self.depth_choices), max(self.kernel_choices),
                             max(self.expand_choices), max(self.resolutions))

    def min_arch(self) -> "ArchConfig":
        return self._uniform(min(self.depth_choices), min(self.kernel_choices),
                             min(self.expand_choices), min(self.resolutions))

    def _uniform(self, d: int, k: int, e: int, r: int) -> "ArchConfig":
        n = d * self.num_stages
        return ArchConfig((d,) * self.num_stages, (k,) * n, (e,) * n, r, self.width_mult)

    # -- named decisions (the GTN sampler and the accuracy predictor) ---------------------------
    def decision_choices(self) -> tuple[tuple[str, tuple], ...]:
        """Every elastic decision any arch can make, with its choices: the kernel size and
        expand ratio of each block slot (stage x max depth), each stage's depth, the
        resolution. The accuracy predictor's one-hot layout follows this order."""
        out: list[tuple[str, tuple]] = []
        for s in range(self.num_stages):
            for j in range(self.max_depth):
                out += [(f"kernel.{s}.{j}", self.kernel_choices),
                        (f"expand.{s}.{j}", self.expand_choices)]
        out += [(f"depth.{s}", self.depth_choices) for s in range(self.num_stages)]
        return tuple(out + [("resolution", self.resolutions)])

    def arch_from_decisions(self, values: dict[str, Any]) -> "ArchConfig":
        """The arch that ``values`` (a choice for every decision) selects; slots past a
        stage's depth are ignored."""
        stages = [[(values[f"kernel.{s}.{j}"], values[f"expand.{s}.{j}"])
                   for j in range(values[f"depth.{s}"])] for s in range(self.num_stages)]
        return ArchConfig.from_stage_blocks(stages, values["resolution"], self.width_mult)

    def size(self) -> int:
        """Number of distinct architectures (per resolution times resolutions)."""
        per_block = len(self.kernel_choices) * len(self.expand_choices)
        per_stage = sum(per_block**d for d in self.depth_choices)
        return per_stage**self.num_stages * len(self.resolutions)

    # -- random members ------------------------------------------------------------------
    def sample(self, rng: random.Random) -> "ArchConfig":
        depths = tuple(rng.choice(self.depth_choices) for _ in self.stages)
        n = sum(depths)
        return ArchConfig(
            depths,
            tuple(rng.choice(self.kernel_choices) for _ in range(n)),
            tuple(rng.choice(self.expand_choices) for _ in range(n)),
            rng.choice(self.resolutions),
            self.width_mult,
        )

    def mutate(self, arch: "ArchConfig", rng: random.Random, prob: float) -> "ArchConfig":
        """Resample each elastic decision with probability ``prob`` (Once-for-All mutation)."""
        stages = []
        for stage, blocks in enumerate(arch.stage_blocks()):
            depth = rng.choice(self.depth_choices) if rng.random() < prob else len(blocks)
            new_blocks = []
            for i in range(depth):
                k, e = blocks[i] if i < len(blocks) else (rng.choice(self.kernel_choices),
                                                           rng.choice(self.expand_choices))
                if rng.random() < prob:
                    k = rng.choice(self.kernel_choices)
                if rng.random() < prob:
                    e = rng.choice(self.expand_choices)
                new_blocks.append((k, e))
            stages.append(new_blocks)
        res = rng.choice(self.resolutions) if rng.random() < prob else arch.resolution
        return ArchConfig.from_stage_blocks(stages, res, arch.width_mult)

    def crossover(self, a: "ArchConfig", b: "ArchConfig", rng: random.Random) -> "ArchConfig":
        """Take each decision from one parent at random (Once-for-All crossover)."""
        sa, sb = a.stage_blocks(), b.stage_blocks()
        stages = []
        for ba, bb in zip(sa, sb):
            depth = len(ba) if rng.random() < 0.5 else len(bb)
            blocks = []
            for i in range(depth):
                pool = [blk[i] for blk in (ba, bb) if i < len(blk)]
                k = rng.choice(pool)[0]
                e = rng.choice(pool)[1]
                blocks.append((k, e))
            stages.append(blocks)
        res = a.resolution if rng.random() < 0.5 else b.resolution
        return ArchConfig.from_stage_blocks(stages, res, a.width_mult)

    def enumerate(self) -> Iterator["ArchConfig"]:
        """Every architecture of the space (only sensible for tiny spaces)."""
        import itertools

        block_choices = list(itertools.product(self.kernel_choices, self.expand_choices))
        per_stage = [list(itertools.product(block_choices, repeat=d)) for d in self.depth_choices]
        stage_options = [opt for group in per_stage for opt in group]
        for res in self.resolutions:
            for combo in itertools.product(stage_options, repeat=self.num_stages):
                yield ArchConfig.from_stage_blocks([list(s) for s in combo], res, self.width_mult)

    # -- validation ----------------------------------------------------------------------
    def validate(self, arch: "ArchConfig") -> "ArchConfig":
        """Return ``arch`` if it belongs to this space, else raise ArchError saying why."""
        def bad(msg: str) -> ArchError:
            return ArchError(f"architecture does not fit space '{self.name}': {msg}")

        if len(arch.depths) != self.num_stages:
            raise bad(f"{len(arch.depths)} stage depths, the space has {self.num_stages} stages")
        for d in arch.depths:
            if d not in self.depth_choices:
                raise bad(f"depth {d} not in {list(self.depth_choices)}")
        n = sum(arch.depths)
        if len(arch.kernel_sizes) != n or len(arch.expand_ratios) != n:
            raise bad(f"depths sum to {n} blocks but got {len(arch.kernel_sizes)} kernel sizes "
                      f"and {len(arch.expand_ratios)} expand ratios")
        for k in arch.kernel_sizes:
            if k not in self.kernel_choices:
                raise bad(f"kernel size {k} not in {list(self.kernel_choices)}")
        for e in arch.expand_ratios:
            if e not in self.expand_choices:
                raise bad(f"expand ratio {e} not in {list(self.expand_choices)}")
        if arch.resolution not in self.resolutions:
            raise bad(f"resolution {arch.resolution} not in {short_list(self.resolutions)}")
        if abs(arch.width_mult - self.width_mult) > 1e-9:
            raise bad(f"width_mult {arch.width_mult} but the space is built at {self.width_mult}")
        return arch

    def with_classes(self, num_classes: int) -> "SearchSpace":
        """The same space for another number of classes (for example ImageFolder trees)."""
        return dataclasses.replace(self, task=dataclasses.replace(self.task,
                                                                  num_classes=num_classes))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- its cost (the builders at the end of this module) ----------------------------------
    def network_costs(self, arch: "ArchConfig") -> tuple[BlockCost, ...]:
        """Per-block costs of ``arch`` (no validation: call validate first)."""
        return tuple(block_cost(b) for b in network_blocks(self, arch))

    def network_cost(self, arch: "ArchConfig") -> NetCost:
        return net_cost(self.network_costs(arch))

    def block_keys(self, arch: "ArchConfig") -> list[tuple[str, str]]:
        """(block name, lookup-table key) per block of ``arch``."""
        return [(b.name, block_key(b)) for b in network_blocks(self, arch)]


# the names OFA's arch dicts and configs give the input resolution
_OFA_RESOLUTION = ("r", "resolution", "image_size")


@dataclass(frozen=True)
class ArchConfig:
    """One subnet: a depth per stage; kernel size and expand ratio per active block."""

    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    resolution: int
    width_mult: float = 1.0

    def __post_init__(self) -> None:
        for name in ("depths", "kernel_sizes", "expand_ratios"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "width_mult", float(self.width_mult))

    def stage_blocks(self) -> list[list[tuple[int, int]]]:
        """Per stage, the (kernel, expand) of each active block."""
        out, i = [], 0
        for d in self.depths:
            out.append(list(zip(self.kernel_sizes[i:i + d], self.expand_ratios[i:i + d])))
            i += d
        return out

    @classmethod
    def from_stage_blocks(cls, stages: Sequence[Sequence[tuple[int, int]]], resolution: int,
                          width_mult: float = 1.0) -> "ArchConfig":
        blocks = [b for s in stages for b in s]
        return cls(tuple(len(s) for s in stages), tuple(k for k, _ in blocks),
                   tuple(e for _, e in blocks), resolution, width_mult)

    def decisions(self) -> tuple[tuple[str, int], ...]:
        """The decisions that shape this arch, by the names of ``decision_choices`` (a slot
        past its stage's depth is absent)."""
        out: list[tuple[str, int]] = []
        for s, blocks in enumerate(self.stage_blocks()):
            out.append((f"depth.{s}", len(blocks)))
            for j, (k, e) in enumerate(blocks):
                out += [(f"kernel.{s}.{j}", k), (f"expand.{s}.{j}", e)]
        return tuple(out + [("resolution", self.resolution)])

    def summary(self) -> str:
        """Compact human form: ``r28 d2-3-1-2 k35|357|3|75 e46|333|6|43``."""
        parts = ["|".join("".join(str(v) for v in vals) for vals in self._per_stage(x))
                 for x in (self.kernel_sizes, self.expand_ratios)]
        return f"r{self.resolution} d{'-'.join(map(str, self.depths))} k{parts[0]} e{parts[1]}"

    def _per_stage(self, values: tuple[int, ...]) -> list[tuple[int, ...]]:
        out, i = [], 0
        for d in self.depths:
            out.append(values[i:i + d])
            i += d
        return out

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"depths": list(self.depths), "kernel_sizes": list(self.kernel_sizes),
                "expand_ratios": list(self.expand_ratios), "resolution": self.resolution,
                "width_mult": self.width_mult}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "arch") -> "ArchConfig":
        if {"ks", "e", "d"} <= set(data):
            return cls.from_ofa(data, where)
        check_arch_keys(data, {"depths", "kernel_sizes", "expand_ratios", "resolution"},
                        {"width_mult"}, where)
        try:
            return cls(tuple(data["depths"]), tuple(data["kernel_sizes"]),
                       tuple(data["expand_ratios"]), data["resolution"],
                       data.get("width_mult", 1.0))
        except (TypeError, ValueError) as exc:
            raise ArchError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, where: str = "arch") -> "ArchConfig":
        return cls.from_dict(arch_json(text, where), where)

    @classmethod
    def from_ofa(cls, data: dict[str, Any], where: str = "arch") -> "ArchConfig":
        """Import an Once-for-All arch dict ``{"ks": [...], "e": [...], "d": [...], "r": [...]}``.

        OFA lists a kernel and expand ratio for every block slot (stages x max depth) and
        ignores the slots past each stage's depth; we keep only the active ones.
        """
        # every key OFA writes, under each of its names; anything else is an error (an
        # unknown resolution key would silently leave the default 224)
        check_arch_keys(data, {"ks", "e", "d"}, set(_OFA_RESOLUTION) | {"w", "width_mult"},
                        where)
        given = {k: data[k][0] if isinstance(data[k], (list, tuple)) and data[k] else data[k]
                 for k in _OFA_RESOLUTION if k in data}
        if len({json.dumps(v) for v in given.values()}) > 1:
            raise ArchError(f"{where}: {' and '.join(given)} disagree on the resolution")
        depths = [int(d) for d in data["d"]]
        ks, es = list(data["ks"]), list(data["e"])
        if len(ks) % len(depths) or len(ks) != len(es):
            raise ArchError(f"{where}: OFA 'ks' and 'e' must list max_depth slots per stage "
                            f"({len(depths)} stages; got {len(ks)} ks and {len(es)} e)")
        slots = len(ks) // len(depths)
        k_active, e_active = [], []
        for stage, d in enumerate(depths):
            k_active += ks[stage * slots: stage * slots + d]
            e_active += es[stage * slots: stage * slots + d]
        res = next(iter(given.values()), 224)
        return cls(tuple(depths), tuple(k_active), tuple(e_active), int(res),
                   float(data.get("w", data.get("width_mult", 1.0))))

    def to_ofa(self, max_depth: int) -> dict[str, Any]:
        """Export as an Once-for-All arch dict; inactive slots repeat the stage's last block."""
        ks, es = [], []
        for blocks in self.stage_blocks():
            padded = blocks + [blocks[-1]] * (max_depth - len(blocks))
            ks += [k for k, _ in padded]
            es += [e for _, e in padded]
        return {"ks": ks, "e": es, "d": list(self.depths), "r": [self.resolution]}


# -- the registered spaces ------------------------------------------------------------------

_IMAGENET_STAGES = (
    StageSpec(24, 2, "relu", False),
    StageSpec(40, 2, "relu", True),
    StageSpec(80, 2, "hswish", False),
    StageSpec(112, 1, "hswish", True),
    StageSpec(160, 2, "hswish", True),
)

_CIFAR_STAGES = tuple(dataclasses.replace(s, stride=st)
                      for s, st in zip(_IMAGENET_STAGES, (1, 2, 2, 1, 2)))

_SMALL_STAGES = (  # 28x28 grey images: 28 -> 14 -> 14 -> 7 -> 7
    StageSpec(16, 2, "relu", False),
    StageSpec(24, 1, "relu", True),
    StageSpec(40, 2, "hswish", False),
    StageSpec(48, 1, "hswish", True),
)


def _small_space(task: TaskSpec) -> SearchSpace:
    return SearchSpace(
        name=task.name, task=task, stem_channels=8, stem_stride=1, first_block_channels=8,
        stages=_SMALL_STAGES, head_channels=128, feature_channels=0,
        depth_choices=(1, 2, 3), kernel_choices=(3, 5, 7), expand_choices=(3, 4, 6),
        resolutions=(28,),
    )


def _cifar_space(task: TaskSpec) -> SearchSpace:
    return SearchSpace(
        name=task.name, task=task, stem_channels=16, stem_stride=1, first_block_channels=16,
        stages=_CIFAR_STAGES, head_channels=960, feature_channels=1280,
        depth_choices=(2, 3, 4), kernel_choices=(3, 5, 7), expand_choices=(3, 4, 6),
        resolutions=(32,),
    )


SPACES: dict[str, SearchSpace] = {
    "fashion-mnist": _small_space(TASKS["fashion-mnist"]),
    "digits": _small_space(TASKS["digits"]),
    "cifar10": _cifar_space(TASKS["cifar10"]),
    "cifar100": _cifar_space(TASKS["cifar100"]),
    "imagenet": SearchSpace(  # Once-for-All MobileNetV3 (ofa_mbv3_d234_e346_k357_w1.0)
        name="imagenet", task=TASKS["imagenet"], stem_channels=16, stem_stride=2,
        first_block_channels=16, stages=_IMAGENET_STAGES, head_channels=960,
        feature_channels=1280, depth_choices=(2, 3, 4), kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6), resolutions=tuple(range(128, 225, 4)),
    ),
}


# Spaces that are no task's default, by name: Once-for-All's wider published supernet
# (ofa_mbv3_d234_e346_k357_w1.2). OFA scales every width by 1.2, the head's too, which
# ``channels`` leaves alone, so the head widths are given already scaled.
NAMED_SPACES: dict[str, SearchSpace] = {
    "imagenet-w1.2": dataclasses.replace(
        SPACES["imagenet"], name="imagenet-w1.2", width_mult=1.2,
        head_channels=make_divisible(960 * 1.2), feature_channels=make_divisible(1280 * 1.2)),
}


def get_space(task: str) -> SearchSpace:
    """The mbconv search space of a task, by name."""
    try:
        return SPACES[task]
    except KeyError:
        raise UsageError(f"unknown task '{task}'; valid tasks: {', '.join(SPACES)}") from None


# -- analytic cost (the layout above, in gtn_deploy.spaces.base's types) ----------------------

def network_blocks(space: SearchSpace, arch: ArchConfig) -> tuple[BlockShape, ...]:
    """Every block of ``arch`` with its shapes, in execution order."""
    res = arch.resolution
    stem_ch = space.channels(space.stem_channels)
    first_ch = space.channels(space.first_block_channels)
    h = conv_out(res, space.stem_stride)
    blocks = [BlockShape("stem", "stem", -1, 0, space.task.in_channels, stem_ch, stem_ch, 3,
                         space.stem_stride, res, h, 0, "hswish"),
              BlockShape("first", "first", -1, 0, stem_ch, first_ch, stem_ch, 3, 1, h, h, 0,
                         "relu")]
    cin, i = first_ch, 0
    for stage, (spec, depth) in enumerate(zip(space.stages, arch.depths)):
        cout = space.channels(spec.width)
        for index in range(depth):
            kernel, expand = arch.kernel_sizes[i], arch.expand_ratios[i]
            stride = spec.stride if index == 0 else 1
            hout = conv_out(h, stride)
            mid = make_divisible(round(cin * expand))
            blocks.append(BlockShape(f"s{stage}.b{index}", "mbconv", stage, index, cin, cout,
                                     mid, kernel, stride, h, hout,
                                     space.se_channels(mid) if spec.se else 0, spec.activation))
            cin, h, i = cout, hout, i + 1
    blocks.append(BlockShape("head", "head", -1, 0, cin, space.head_channels,
                             space.head_channels, 1, 1, h, 1, 0, "hswish",
                             space.feature_channels, space.task.num_classes))
    return tuple(blocks)


@functools.lru_cache(maxsize=65536)
def block_cost(shape: BlockShape) -> BlockCost:
    """Layers and totals of one block; cached because search revisits blocks constantly."""
    layers = tuple(_BUILDERS[shape.kind](shape))
    return BlockCost(shape, layers, sum(x.params for x in layers), sum(x.flops for x in layers),
                     _block_peak(layers, shape))


def _stem(b: BlockShape) -> list[Layer]:
    return [_conv("stem", "conv", "stem", b.cin, b.cout, 3, b.hin, b.stride)[0]]


def _first(b: BlockShape) -> list[Layer]:
    dw, _ = _conv("first.depthwise", "depthwise", "first", b.cin, b.cin, 3, b.hin, 1,
                  groups=b.cin)
    layers = [dw, _pointwise("first.project", "first", b.cin, b.cout, b.hin)]
    if _skip(b):
        layers.append(_add("first.add", "first", b.cout * b.hout * b.hout))
    return layers


def _mbconv(b: BlockShape) -> list[Layer]:
    prefix, block = f"stages.{b.stage}.blocks.{b.index}", b.name
    dw, _ = _conv(f"{prefix}.depthwise", "depthwise", block, b.mid, b.mid, b.kernel, b.hin,
                  b.stride, groups=b.mid)
    layers = [_pointwise(f"{prefix}.expand", block, b.cin, b.mid, b.hin), dw]
    if b.se_channels:
        layers.append(_se(f"{prefix}.se", block, b.mid, b.se_channels, b.hout))
    layers.append(_pointwise(f"{prefix}.project", block, b.mid, b.cout, b.hout))
    if _skip(b):
        layers.append(_add(f"{prefix}.add", block, b.cout * b.hout * b.hout))
    return layers


def _head(b: BlockShape) -> list[Layer]:
    cin, h, head_ch = b.cin, b.hin, b.cout
    layers = [_pointwise("head.conv", "head", cin, head_ch, h),
              Layer("head.pool", "pool", "head", 0, 0, head_ch * h * h, head_ch)]
    width = head_ch
    if b.features:
        # Linears have bias; FlopCounterMode does not count the bias add.
        layers.append(Layer("head.feature", "linear", "head", 2 * width * b.features,
                            width * b.features + b.features, width, b.features))
        width = b.features
    layers.append(Layer("head.classifier", "linear", "head", 2 * width * b.classes,
                        width * b.classes + b.classes, width, b.classes))
    return layers


_BUILDERS = {"stem": _stem, "first": _first, "mbconv": _mbconv, "head": _head}


def _block_peak(layers: tuple[Layer, ...], shape: BlockShape) -> int:
    """Largest live activation set inside a block, per image: a layer's input and output,
    plus the block input held for the residual add while the block runs."""
    held = shape.cin * shape.hin * shape.hin if _skip(shape) else 0
    return max(x.in_elems + x.out_elems + (held if x.op_class != "elementwise" else 0)
               for x in layers)


def _skip(b: BlockShape) -> bool:
    """A residual add: stride 1 and the same width in and out."""
    return b.kind in ("first", "mbconv") and b.stride == 1 and b.cin == b.cout


def block_key(b: BlockShape) -> str:
    """Once-for-All style lookup key (precision and runtime live in the fingerprint)."""
    shape = f"in:{b.hin}x{b.hin}x{b.cin}-out:{b.hout}x{b.hout}x{b.cout}"
    if b.kind != "mbconv":
        return f"{b.kind}-{shape}-skip:{int(_skip(b))}"
    return (f"mbconv-{shape}-mid:{b.mid}-k:{b.kernel}-s:{b.stride}"
            f"-skip:{int(_skip(b))}-se:{int(b.se_channels > 0)}-act:{b.activation}")


def _conv(name, op_class, block, cin, cout, k, hin, stride, groups=1, bn=True, bias=False,
          kernels=1) -> tuple[Layer, int]:
    hout = conv_out(hin, stride)
    weights = cout * (cin // groups) * k * k
    params = weights + (2 * cout if bn else 0) + (cout if bias else 0)
    flops = 2 * weights * hout * hout
    return Layer(name, op_class, block, flops, params, cin * hin * hin, cout * hout * hout,
                 kernels), hout


def _pointwise(name, block, cin, cout, h, bn=True) -> Layer:
    return _conv(name, "pointwise", block, cin, cout, 1, h, 1, bn=bn)[0]


def _se(name, block, mid, se_mid, h) -> Layer:
    # pool, reduce (bias), expand (bias), scale: launched as ~3 kernels once fused.
    params = mid * se_mid + se_mid + se_mid * mid + mid
    return Layer(name, "se", block, 2 * (mid * se_mid + se_mid * mid), params,
                 mid * h * h, mid * h * h, kernels=3)


def _add(name, block, elems) -> Layer:
    return Layer(name, "elementwise", block, 0, 0, 2 * elems, elems, kernels=1)
