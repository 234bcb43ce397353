"""Analytic cost of an architecture: per-layer FLOPs, parameters and activations (no torch).

FLOPs count 2 per multiply-accumulate of convolutions and linears only, which is exactly what
``torch.utils.flop_counter.FlopCounterMode`` counts (BN, activations, pooling and adds are
free there; their cost shows up in the latency model as memory traffic and kernel launches).
The layout follows ``gtn_deploy.arch``; the supernet tests check params exactly and FLOPs to
2% against the real modules.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from gtn_deploy.arch import ArchConfig, SearchSpace, conv_out, make_divisible


@dataclass(frozen=True)
class Layer:
    """One fused kernel (or a few, see ``kernels``) of the network, per image."""

    name: str          # module-path-like: "stages.1.blocks.0.expand"
    op_class: str      # conv | pointwise | depthwise | se | linear | pool | elementwise
    block: str         # "stem", "first", "s1.b0", "head"
    flops: int
    params: int
    in_elems: int
    out_elems: int
    kernels: int = 1

    @property
    def weight_elems(self) -> int:
        return self.params


@dataclass(frozen=True)
class NetCost:
    params: int
    flops: int
    peak_activation_elems: int
    blocks: tuple["BlockCost", ...]

    @property
    def mflops(self) -> float:
        return self.flops / 1e6

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(layer for block in self.blocks for layer in block.layers)


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


class BlockShape(NamedTuple):
    """One block of the network with the shapes it sees: what a latency table keys on."""

    name: str        # "stem", "first", "s1.b0", "head"
    kind: str        # stem | first | mbconv | head
    stage: int
    index: int
    cin: int
    cout: int
    mid: int
    kernel: int
    stride: int
    hin: int
    hout: int
    se_channels: int  # 0: no squeeze-excite
    activation: str
    features: int = 0  # head only: feature-mix width (0: none)
    classes: int = 0   # head only

    @property
    def skip(self) -> bool:
        return self.kind in ("first", "mbconv") and self.stride == 1 and self.cin == self.cout

    def key(self) -> str:
        """Once-for-All style lookup key (precision and runtime live in the fingerprint)."""
        shape = f"in:{self.hin}x{self.hin}x{self.cin}-out:{self.hout}x{self.hout}x{self.cout}"
        if self.kind != "mbconv":
            return f"{self.kind}-{shape}-skip:{int(self.skip)}"
        return (f"mbconv-{shape}-mid:{self.mid}-k:{self.kernel}-s:{self.stride}"
                f"-skip:{int(self.skip)}-se:{int(self.se_channels > 0)}-act:{self.activation}")


@dataclass(frozen=True)
class BlockCost:
    shape: BlockShape
    layers: tuple[Layer, ...]
    params: int
    flops: int
    peak_activation_elems: int


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
    if b.skip:
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
    if b.skip:
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
    held = shape.cin * shape.hin * shape.hin if shape.skip else 0
    return max(x.in_elems + x.out_elems + (held if x.op_class != "elementwise" else 0)
               for x in layers)


def network_costs(space: SearchSpace, arch: ArchConfig) -> tuple[BlockCost, ...]:
    """Per-block costs of ``arch`` (no validation: call space.validate first)."""
    if space.family != "mbconv":  # another family costs its own blocks (gtn_deploy.spaces)
        return space.network_costs(arch)
    return tuple(block_cost(b) for b in network_blocks(space, arch))


def network_layers(space: SearchSpace, arch: ArchConfig) -> tuple[Layer, ...]:
    """Every layer of ``arch`` in execution order."""
    if space.family != "mbconv":  # another family costs its own blocks (gtn_deploy.spaces)
        return space.network_layers(arch)
    return tuple(layer for block in network_costs(space, arch) for layer in block.layers)


def network_cost(space: SearchSpace, arch: ArchConfig) -> NetCost:
    """Totals and the per-layer breakdown of ``arch``."""
    if space.family != "mbconv":  # another family costs its own blocks (gtn_deploy.spaces)
        return space.network_cost(arch)
    blocks = network_costs(space, arch)
    return NetCost(
        params=sum(b.params for b in blocks),
        flops=sum(b.flops for b in blocks),
        peak_activation_elems=max(b.peak_activation_elems for b in blocks),
        blocks=blocks,
    )


def block_keys(space: SearchSpace, arch: ArchConfig) -> list[tuple[str, str]]:
    """(block name, lookup-table key) per block of ``arch``."""
    if space.family != "mbconv":  # another family costs its own blocks (gtn_deploy.spaces)
        return space.block_keys(arch)
    return [(b.name, b.key()) for b in network_blocks(space, arch)]
