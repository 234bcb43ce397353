"""Latency and memory predictions (no torch): one ``LatencyModel`` per profile and precision.

Three tiers implement the protocol, and ``latency_model`` alone picks one:

- tier 0, the analytic roofline from the profile's datasheet numbers (``cost.roofline``);
- tier 1, the same formula with coefficients fitted on the device (``cost.tier1``);
- tier 2, a block table measured in context plus a residual (``cost.lut``), for the spaces
  it was measured on, at batch 1; an arch whose blocks it covers too little falls to tier 1.

A profile carries tiers 1 and 2 in its ``calibration`` section (written by ``gtnd
calibrate``); a calibration for another precision does not apply, and tier 0 answers.
Callers (the planner, export, reports) ask the model and never which tier it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.constants import PRECISIONS
from gtn_deploy.cost.analytic import NetCost, network_cost, network_layers
from gtn_deploy.cost.calibrate import MIN_BAND
from gtn_deploy.cost.lut import BlockTable
from gtn_deploy.cost.roofline import BYTES_PER_ELEM, Roofline, roofline, tier0_ms
from gtn_deploy.cost.tier1 import Tier1, tier1_ms
from gtn_deploy.errors import UsageError

if TYPE_CHECKING:
    from gtn_deploy.profiles import DeviceProfile

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


class LatencyModel(Protocol):
    """Latency of a space's subnets on one device, precision and batch size."""

    def latency_ms(self, arch: Arch, cost: NetCost | None = None) -> float:
        """The prediction alone: the search's fast path (``cost``: the arch's, if known)."""
        ...

    def estimate(self, arch: Arch, breakdown: bool = False) -> LatencyEstimate:
        """The prediction with its error band and tier (and per layer, where it has one)."""
        ...


def _band(ms: float, error: float) -> tuple[float, float]:
    return ms / (1 + error), ms * (1 + error)


@dataclass(frozen=True)
class Tier0:
    space: Space
    model: Roofline

    def latency_ms(self, arch: Arch, cost: NetCost | None = None) -> float:
        return tier0_ms(self.space, arch, self.model, cost)

    def estimate(self, arch: Arch, breakdown: bool = False) -> LatencyEstimate:
        ms = self.latency_ms(arch)
        per_layer = ()
        if breakdown:
            per_layer = tuple((layer.name, self.model.layer_seconds(layer) * 1e3)
                              for layer in network_layers(self.space, arch))
        return LatencyEstimate(ms, *_band(ms, self.model.expected_error), 0, per_layer)


@dataclass(frozen=True)
class Tier1Model:
    space: Space
    model: Tier1
    batch_size: int
    error: float
    fingerprint: dict

    def latency_ms(self, arch: Arch, cost: NetCost | None = None) -> float:
        return tier1_ms(self.space, arch, self.model, self.batch_size)

    def estimate(self, arch: Arch, breakdown: bool = False) -> LatencyEstimate:
        ms = self.latency_ms(arch)
        return LatencyEstimate(ms, *_band(ms, self.error), 1, (), self.fingerprint)


@dataclass(frozen=True)
class Tier2Model:
    table: BlockTable
    tier1: Tier1Model  # for what the table does not cover
    error: float

    def latency_ms(self, arch: Arch, cost: NetCost | None = None) -> float:
        return self.estimate(arch).latency_ms

    def estimate(self, arch: Arch, breakdown: bool = False) -> LatencyEstimate:
        ms = self.table.predict_ms(self.tier1.space, arch, self.tier1.model)
        if ms is None:
            return self.tier1.estimate(arch)
        return LatencyEstimate(ms, *_band(ms, self.error), 2, (), self.tier1.fingerprint)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    return precision


_PARSED: dict[tuple, tuple[Tier1, BlockTable | None]] = {}


def _parsed(profile: "DeviceProfile") -> tuple[Tier1, BlockTable | None]:
    """The calibration's tiers, parsed once per profile content (plans ask many times)."""
    key = (profile.id, getattr(profile, "content_hash", None) or id(profile.calibration))
    if key not in _PARSED:
        cal = profile.calibration
        table = BlockTable.from_dict(cal["tier2"]) if cal.get("tier2") else None
        _PARSED[key] = (Tier1.from_dict(cal["tier1"]), table)
    return _PARSED[key]


def latency_model(profile: "DeviceProfile", space: Space, precision: str = "fp32",
                  batch_size: int = 1, power_mode: str | None = None) -> LatencyModel:
    """The best tier the profile supports for this space, precision and batch size."""
    check_precision(precision)
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    cal: dict[str, Any] | None = getattr(profile, "calibration", None)
    fingerprint = (cal or {}).get("fingerprint") or {}
    if not cal or fingerprint.get("precision") not in (None, precision):
        return Tier0(space, roofline(profile, precision, batch_size, power_mode))
    errors = cal.get("expected_error") or {}

    def error(tier: int) -> float:
        return max(MIN_BAND, float(errors.get(str(tier), 0.3)))

    tier1, table = _parsed(profile)
    fitted = Tier1Model(space, tier1, batch_size, error(1), fingerprint)
    if (table is not None and batch_size == 1 and int(cal.get("tier", 1)) >= 2
            and space.name in cal.get("spaces", ())):
        return Tier2Model(table, fitted, error(2))
    return fitted


def predict_latency(space: Space, arch: Arch, profile: "DeviceProfile",
                    precision: str = "fp32", batch_size: int = 1,
                    power_mode: str | None = None, breakdown: bool = False) -> LatencyEstimate:
    """Predicted latency of ``arch`` on ``profile``, with the error band of the tier used."""
    return latency_model(profile, space, precision, batch_size, power_mode).estimate(
        arch, breakdown)


def predict_memory_mb(space: Space, arch: Arch, precision: str = "fp32",
                      batch_size: int = 1, cost: NetCost | None = None) -> float:
    """Model memory at inference: weights plus the peak live activations, in MB."""
    cost = cost or network_cost(space, arch)
    per = BYTES_PER_ELEM[check_precision(precision)]
    return (cost.params + cost.peak_activation_elems * batch_size) * per / MB
