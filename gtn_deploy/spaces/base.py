"""What every network family implements, and the words it counts its cost in (no torch).

A family is a ``Space`` (the fixed skeleton and the elastic choices of one supernet for one
task) and the ``Arch`` type its members have. Generic code (planner, search, cost models,
accuracy predictor, calibration, training) is typed on these two protocols and never asks
which family it holds: each verb it needs is here.

A family costs its own blocks (``Space.network_costs``) in the types below: ``BlockShape``
(one block with the shapes it sees: what a latency table keys on), ``Layer`` (one fused
kernel), ``BlockCost`` and ``NetCost``. ``gtn_deploy.cost`` turns them into latency and
memory. FLOPs count 2 per multiply-accumulate of convolutions and linears only, which is
exactly what ``torch.utils.flop_counter.FlopCounterMode`` counts.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence

from gtn_deploy.arch import TaskSpec
from gtn_deploy.errors import ArchError

# -- the cost vocabulary ------------------------------------------------------------------------


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


class BlockShape(NamedTuple):
    """One block of the network with the shapes it sees: what a latency table keys on."""

    name: str        # "stem", "first", "s1.b0", "head"
    kind: str        # the family's block kinds: stem | first | mbconv | bottleneck | head ...
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


@dataclass(frozen=True)
class BlockCost:
    shape: BlockShape
    layers: tuple[Layer, ...]
    params: int
    flops: int
    peak_activation_elems: int


def net_cost(blocks: tuple[BlockCost, ...]) -> NetCost:
    """Totals of a network from its blocks' costs."""
    return NetCost(params=sum(b.params for b in blocks), flops=sum(b.flops for b in blocks),
                   peak_activation_elems=max(b.peak_activation_elems for b in blocks),
                   blocks=blocks)


# -- the protocols ----------------------------------------------------------------------------


class Arch(Protocol):
    """One member of a space: frozen, with readable fields, round-tripping through JSON."""

    @property
    def resolution(self) -> int: ...

    def decisions(self) -> tuple[tuple[str, Any], ...]:
        """The decisions that shape this arch, by the names of ``Space.decision_choices``."""

    def summary(self) -> str:
        """A compact one-line human form."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_json(self) -> str: ...


class Space(Protocol):
    """The fixed skeleton and the elastic choices of one supernet for one task."""

    family: str  # the registry's name for the family (a class attribute)

    @property
    def name(self) -> str: ...

    @property
    def task(self) -> TaskSpec: ...

    @property
    def resolutions(self) -> tuple[int, ...]: ...

    # extraction hints: GTN enters and leaves the supernet between stages
    @property
    def num_stages(self) -> int: ...

    # sampling (the space is never changed)
    def sample(self, rng: random.Random) -> Arch: ...

    def mutate(self, arch: Any, rng: random.Random, prob: float) -> Arch: ...

    def crossover(self, a: Any, b: Any, rng: random.Random) -> Arch: ...

    def max_arch(self) -> Arch: ...

    def min_arch(self) -> Arch: ...

    def size(self) -> int: ...

    # named decisions (the GTN sampler, the accuracy predictor's encoding)
    def decision_choices(self) -> tuple[tuple[str, tuple], ...]: ...

    def arch_from_decisions(self, values: dict[str, Any]) -> Arch: ...

    # encoding and validation
    def validate(self, arch: Any) -> Arch: ...

    def arch_from_dict(self, data: dict[str, Any], where: str = "arch") -> Arch: ...

    def with_classes(self, num_classes: int) -> "Space": ...

    def to_dict(self) -> dict[str, Any]: ...

    # costs, in the vocabulary above
    def network_costs(self, arch: Any) -> tuple[BlockCost, ...]: ...

    def block_keys(self, arch: Any) -> list[tuple[str, str]]: ...


# -- helpers every family's layout uses ---------------------------------------------------------


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10% (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution with this stride."""
    return (size + stride - 1) // stride


def check_arch_keys(data: dict[str, Any], required: set[str], optional: set[str],
                    where: str) -> None:
    """An arch dict has every required key and nothing unknown (any family's arch type)."""
    allowed = required | optional
    missing, unknown = required - set(data), set(data) - allowed
    if missing or unknown:
        what = f"missing {sorted(missing)}" if missing else f"unknown keys {sorted(unknown)}"
        raise ArchError(f"{where}: {what}; expected keys {sorted(allowed)}")


def arch_json(text: str, where: str) -> dict[str, Any]:
    """The JSON object of an arch, or one ArchError line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArchError(f"{where}: expected a JSON object")
    return data


def short_list(values: Sequence[int]) -> str:
    return str(list(values)) if len(values) <= 6 else f"{values[0]}..{values[-1]}"
