"""Latency and memory predictions (no torch).

Tier 0 is the analytic roofline of ../shared/docs/DEVICES.md, per fused kernel:

    t = max(FLOPs / (eta_c * peak), bytes / (eta_m * bandwidth)) + kernels * t_kernel
    network = sum(t) + t_invoke

with eta_c per op class, all read from the device profile. A profile that carries a
``calibration`` section (written by ``gtnd calibrate``) predicts with tier 1 or 2 instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gtn_deploy.arch import ArchConfig, SearchSpace
from gtn_deploy.constants import OP_CLASSES, PRECISIONS
from gtn_deploy.cost.analytic import (BlockCost, Layer, NetCost, network_cost, network_costs,
                                      network_layers)
from gtn_deploy.errors import UsageError

if TYPE_CHECKING:
    from gtn_deploy.profiles import DeviceProfile

BYTES_PER_ELEM = {"fp32": 4, "fp16": 2, "int8": 1}
MB = 1e6  # memory figures are in MB = 10^6 bytes


@dataclass(frozen=True)
class LatencyEstimate:
    latency_ms: float
    low_ms: float
    high_ms: float
    tier: int
    per_layer: tuple[tuple[str, float], ...] = ()
    fingerprint: dict | None = None

    def to_dict(self) -> dict:
        return {"latency_ms": round(self.latency_ms, 4), "low_ms": round(self.low_ms, 4),
                "high_ms": round(self.high_ms, 4), "tier": self.tier,
                "fingerprint": self.fingerprint}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class _Roofline:
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
             power_mode: str | None = None) -> _Roofline:
    lm = profile.latency_model
    return _Roofline(
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


def tier0_ms(space: SearchSpace, arch: ArchConfig, model: _Roofline,
             cost: NetCost | None = None) -> float:
    """Tier-0 latency in ms; the search's fast path (block times are cached on ``model``)."""
    blocks = cost.blocks if cost is not None else network_costs(space, arch)
    total = sum(map(model.block_seconds, blocks))
    return (total + model.invoke_s) * 1e3


def predict_latency(space: SearchSpace, arch: ArchConfig, profile: "DeviceProfile",
                    precision: str = "fp32", batch_size: int = 1,
                    power_mode: str | None = None, breakdown: bool = False) -> LatencyEstimate:
    """Predicted latency of ``arch`` on ``profile``, with the error band of the tier used."""
    check_precision(precision)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if getattr(profile, "calibration", None):
        from gtn_deploy.cost.calibrate import predict_calibrated

        return predict_calibrated(space, arch, profile, precision, batch_size)
    model = roofline(profile, precision, batch_size, power_mode)
    ms = tier0_ms(space, arch, model)
    per_layer = ()
    if breakdown:
        per_layer = tuple((layer.name, model.layer_seconds(layer) * 1e3)
                          for layer in network_layers(space, arch))
    err = model.expected_error
    return LatencyEstimate(ms, ms / (1 + err), ms * (1 + err), 0, per_layer)


def predict_memory_mb(space: SearchSpace, arch: ArchConfig, precision: str = "fp32",
                      batch_size: int = 1, cost: NetCost | None = None) -> float:
    """Model memory at inference: weights plus the peak live activations, in MB."""
    cost = cost or network_cost(space, arch)
    per = BYTES_PER_ELEM[check_precision(precision)]
    return (cost.params + cost.peak_activation_elems * batch_size) * per / MB
