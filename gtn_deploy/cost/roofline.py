"""Tier 0: the analytic roofline of ../shared/docs/DEVICES.md, per fused kernel (no torch).

    t = max(FLOPs / (eta_c * peak), bytes / (eta_m * bandwidth)) + kernels * t_kernel
    network = sum(t) + t_invoke

with eta_c per op class, all read from the device profile. It needs no measurement, so it
is also the reference that task-scaled budgets and calibration start from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.constants import OP_CLASSES
from gtn_deploy.cost.analytic import BlockCost, Layer, NetCost, network_costs

if TYPE_CHECKING:
    from gtn_deploy.profiles import DeviceProfile

BYTES_PER_ELEM = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Roofline:
    """The profile numbers tier 0 needs, flattened once (profiles are pydantic, slow to read)."""

    peak_flops: float
    bandwidth: float
    eta: tuple[tuple[str, float], ...]
    eta_memory: float
    kernel_s: float
    invoke_s: float
    expected_error: float
    bytes_per_elem: int
    batch_size: int
    _blocks: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def layer_seconds(self, layer: Layer) -> float:
        eta = dict(self.eta)[layer.op_class]
        compute = layer.flops * self.batch_size / (eta * self.peak_flops)
        traffic = ((layer.in_elems + layer.out_elems) * self.batch_size + layer.weight_elems)
        memory = traffic * self.bytes_per_elem / (self.eta_memory * self.bandwidth)
        return max(compute, memory) + layer.kernels * self.kernel_s

    def block_seconds(self, block: BlockCost) -> float:
        seconds = self._blocks.get(block.shape)
        if seconds is None:
            seconds = self._blocks[block.shape] = sum(map(self.layer_seconds, block.layers))
        return seconds


def roofline(profile: "DeviceProfile", precision: str, batch_size: int,
             power_mode: str | None = None) -> Roofline:
    lm = profile.latency_model
    return Roofline(
        peak_flops=profile.peak_flops(precision, power_mode),
        bandwidth=profile.memory_bandwidth(power_mode),
        eta=tuple((c, lm.efficiency(c, precision)) for c in OP_CLASSES),
        eta_memory=lm.memory_efficiency,
        kernel_s=lm.kernel_overhead_us * 1e-6,
        invoke_s=lm.invoke_overhead_us * 1e-6,
        expected_error=lm.expected_error,
        bytes_per_elem=BYTES_PER_ELEM[precision],
        batch_size=batch_size,
    )


def tier0_ms(space: Space, arch: Arch, model: Roofline,
             cost: NetCost | None = None) -> float:
    """Tier-0 latency in ms; the search's fast path (block times are cached on ``model``)."""
    blocks = cost.blocks if cost is not None else network_costs(space, arch)
    total = sum(map(model.block_seconds, blocks))
    return (total + model.invoke_s) * 1e3
