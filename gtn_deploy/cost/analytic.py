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
    layers: tuple[Layer, ...]

    @property
    def mflops(self) -> float:
        return self.flops / 1e6


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


@functools.lru_cache(maxsize=65536)
def _mbconv(stage: int, index: int, cin: int, cout: int, mid: int, kernel: int, stride: int,
            h: int, se_channels: int) -> tuple[Layer, ...]:
    """Layers of one inverted-residual block; cached because search revisits blocks often."""
    prefix, block = f"stages.{stage}.blocks.{index}", f"s{stage}.b{index}"
    dw, hout = _conv(f"{prefix}.depthwise", "depthwise", block, mid, mid, kernel, h, stride,
                     groups=mid)
    layers = [_pointwise(f"{prefix}.expand", block, cin, mid, h), dw]
    if se_channels:
        layers.append(_se(f"{prefix}.se", block, mid, se_channels, hout))
    layers.append(_pointwise(f"{prefix}.project", block, mid, cout, hout))
    if stride == 1 and cin == cout:
        layers.append(_add(f"{prefix}.add", block, cout * hout * hout))
    return tuple(layers)


@dataclass(frozen=True)
class BlockShape:
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
    se: bool
    activation: str

    @property
    def skip(self) -> bool:
        return self.kind in ("first", "mbconv") and self.stride == 1 and self.cin == self.cout

    def key(self) -> str:
        """Once-for-All style lookup key (precision and runtime live in the fingerprint)."""
        shape = f"in:{self.hin}x{self.hin}x{self.cin}-out:{self.hout}x{self.hout}x{self.cout}"
        if self.kind != "mbconv":
            return f"{self.kind}-{shape}-skip:{int(self.skip)}"
        return (f"mbconv-{shape}-mid:{self.mid}-k:{self.kernel}-s:{self.stride}"
                f"-skip:{int(self.skip)}-se:{int(self.se)}-act:{self.activation}")


def network_blocks(space: SearchSpace, arch: ArchConfig) -> tuple[BlockShape, ...]:
    """Every block of ``arch`` with its shapes, in execution order."""
    return _network_blocks(space, arch)


@functools.lru_cache(maxsize=8192)
def _network_blocks(space: SearchSpace, arch: ArchConfig) -> tuple[BlockShape, ...]:
    res, cin0 = arch.resolution, space.task.in_channels
    stem_ch = space.channels(space.stem_channels)
    first_ch = space.channels(space.first_block_channels)
    h = conv_out(res, space.stem_stride)
    blocks = [BlockShape("stem", "stem", -1, 0, cin0, stem_ch, stem_ch, 3, space.stem_stride,
                         res, h, False, "hswish"),
              BlockShape("first", "first", -1, 0, stem_ch, first_ch, stem_ch, 3, 1, h, h,
                         False, "relu")]
    cin = first_ch
    for stage, (spec, arch_blocks) in enumerate(zip(space.stages, arch.stage_blocks())):
        cout = space.channels(spec.width)
        for index, (kernel, expand) in enumerate(arch_blocks):
            stride = spec.stride if index == 0 else 1
            hout = conv_out(h, stride)
            blocks.append(BlockShape(f"s{stage}.b{index}", "mbconv", stage, index, cin, cout,
                                     make_divisible(round(cin * expand)), kernel, stride, h,
                                     hout, spec.se, spec.activation))
            cin, h = cout, hout
    blocks.append(BlockShape("head", "head", -1, 0, cin, space.head_channels,
                             space.head_channels, 1, 1, h, 1, False, "hswish"))
    return tuple(blocks)


def network_layers(space: SearchSpace, arch: ArchConfig) -> tuple[Layer, ...]:
    """Every layer of ``arch`` in execution order (no validation: call space.validate first)."""
    return _network_layers(space, arch)


@functools.lru_cache(maxsize=8192)
def _network_layers(space: SearchSpace, arch: ArchConfig) -> tuple[Layer, ...]:
    layers: list[Layer] = []
    for b in network_blocks(space, arch):
        if b.kind == "stem":
            layers.append(_conv("stem", "conv", "stem", b.cin, b.cout, 3, b.hin, b.stride)[0])
        elif b.kind == "first":
            layers += _first_block(b)
        elif b.kind == "mbconv":
            layers += _mbconv(b.stage, b.index, b.cin, b.cout, b.mid, b.kernel, b.stride, b.hin,
                              space.se_channels(b.mid) if b.se else 0)
        else:
            layers += _head(space, b.cin, b.hin)
    return tuple(layers)


def _first_block(b: BlockShape) -> list[Layer]:
    dw, _ = _conv("first.depthwise", "depthwise", "first", b.cin, b.cin, 3, b.hin, 1,
                  groups=b.cin)
    layers = [dw, _pointwise("first.project", "first", b.cin, b.cout, b.hin)]
    if b.skip:
        layers.append(_add("first.add", "first", b.cout * b.hout * b.hout))
    return layers


def _head(space: SearchSpace, cin: int, h: int) -> list[Layer]:
    head_ch = space.head_channels
    layers = [_pointwise("head.conv", "head", cin, head_ch, h),
              Layer("head.pool", "pool", "head", 0, 0, head_ch * h * h, head_ch)]
    width = head_ch
    if space.feature_channels:
        feat = space.feature_channels
        layers.append(Layer("head.feature", "linear", "head", 2 * width * feat, width * feat,
                            width, feat))
        width = feat
    classes = space.task.num_classes
    layers.append(Layer("head.classifier", "linear", "head", 2 * width * classes,
                        width * classes + classes, width, classes))
    return layers


def network_cost(space: SearchSpace, arch: ArchConfig) -> NetCost:
    """Totals and the per-layer breakdown of ``arch``."""
    layers = network_layers(space, arch)
    return NetCost(
        params=sum(layer.params for layer in layers),
        flops=sum(layer.flops for layer in layers),
        peak_activation_elems=peak_activation_elems(layers),
        layers=layers,
    )


def peak_activation_elems(layers: tuple[Layer, ...]) -> int:
    """Largest live activation set, per image: a layer's input and output, plus the block
    input held for a residual add while the block runs."""
    peak, held, current_block, block_input = 0, 0, None, 0
    has_skip = {layer.block for layer in layers if layer.op_class == "elementwise"}
    for layer in layers:
        if layer.block != current_block:
            current_block, block_input = layer.block, layer.in_elems
        held = block_input if layer.block in has_skip and layer.op_class != "elementwise" else 0
        peak = max(peak, layer.in_elems + layer.out_elems + held)
    return peak


def block_keys(space: SearchSpace, arch: ArchConfig) -> list[tuple[str, str]]:
    """(block name, lookup-table key) per block of ``arch``."""
    return [(b.name, b.key()) for b in network_blocks(space, arch)]
