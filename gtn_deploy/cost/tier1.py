"""Tier 1: the roofline's formula with coefficients fitted to measurements (no torch).

Per fused kernel ``max(flops * a_class, bytes * a_mem) + kernels * t_kernel``, plus
``t_invoke`` per inference; ``cost.calibrate.fit_tier1`` fits the coefficients. Block sums
are cached across architectures, because the search evaluates thousands of them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.cost.analytic import Layer, network_layers


@dataclass(frozen=True)
class Tier1:
    """Fitted roofline coefficients (seconds per FLOP / byte / kernel / inference)."""

    per_flop: tuple[tuple[str, float], ...]
    per_byte: float
    kernel_s: float
    invoke_s: float
    bytes_per_elem: int

    def layer_terms(self, layer: Layer, batch: int) -> tuple[float, float]:
        compute = layer.flops * batch * dict(self.per_flop).get(layer.op_class, 0.0)
        traffic = (layer.in_elems + layer.out_elems) * batch + layer.weight_elems
        return compute, traffic * self.bytes_per_elem * self.per_byte

    def layer_seconds(self, layer: Layer, batch: int = 1) -> float:
        return max(self.layer_terms(layer, batch)) + layer.kernels * self.kernel_s

    def seconds(self, layers: Sequence[Layer], batch: int = 1) -> float:
        return sum(self.layer_seconds(layer, batch) for layer in layers) + self.invoke_s

    def to_dict(self, peak_flops: float | None = None, bandwidth: float | None = None) -> dict:
        out = {"seconds_per_gflop": {c: v * 1e9 for c, v in self.per_flop},
               "seconds_per_gbyte": self.per_byte * 1e9,
               "kernel_overhead_us": self.kernel_s * 1e6,
               "invoke_overhead_us": self.invoke_s * 1e6, "bytes_per_elem": self.bytes_per_elem}
        if peak_flops:  # the same numbers as fractions of the profile's datasheet peaks
            out["efficiency"] = {c: (1 / (v * peak_flops) if v > 0 else None)
                                 for c, v in self.per_flop}
        if bandwidth and self.per_byte > 0:
            out["memory_efficiency"] = 1 / (self.per_byte * bandwidth)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Tier1":
        return cls(tuple((c, float(v) * 1e-9) for c, v in d["seconds_per_gflop"].items()),
                   float(d["seconds_per_gbyte"]) * 1e-9, float(d["kernel_overhead_us"]) * 1e-6,
                   float(d["invoke_overhead_us"]) * 1e-6, int(d["bytes_per_elem"]))


@functools.lru_cache(maxsize=262144)
def block_seconds(model: Tier1, layers: tuple[Layer, ...], batch: int) -> float:
    return sum(model.layer_seconds(layer, batch) for layer in layers)


def _blocks(space: Space, arch: Arch):
    """(block name, its layers) in order."""
    layers = network_layers(space, arch)
    start = 0
    for end in range(1, len(layers) + 1):
        if end == len(layers) or layers[end].block != layers[start].block:
            yield layers[start].block, layers[start:end]
            start = end


def tier1_ms(space: Space, arch: Arch, model: Tier1, batch: int = 1) -> float:
    """Tier-1 latency in ms."""
    total = sum(block_seconds(model, layers, batch) for _, layers in _blocks(space, arch))
    return (total + model.invoke_s) * 1e3


def tier1_block_ms(space: Space, arch: Arch, model: Tier1) -> dict[str, float]:
    """Tier-1 time of every block of ``arch`` (batch 1), ms."""
    return {name: block_seconds(model, layers, 1) * 1e3 for name, layers in _blocks(space, arch)}
