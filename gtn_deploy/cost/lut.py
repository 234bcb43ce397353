"""Tier 2: a block lookup table measured in context, plus a residual on log latency.

Keys are Once-for-All style (``gtn_deploy.cost.analytic.block_keys``: block kind, in/out
shape, mid channels, kernel, stride, skip, SE, activation; runtime and precision live in the
calibration's fingerprint). A block's entry is the median, over the calibration subnets that
contain it, of the summed profiler times of its nodes, so it includes the layout changes and
cache effects of running inside a network. The sum of node times misses the runtime's own
per-run work; a small linear model on ``log(measured / table sum)`` adds it back.
Blocks missing from the table fall back to their tier-1 time times the median ratio of
table to tier-1 over the blocks that were measured.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import median
from typing import Sequence

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.cost.analytic import block_keys, network_layers
from gtn_deploy.cost.tier1 import Tier1, tier1_block_ms

RESIDUAL_FEATURES = ("1", "log_table_ms", "kernels_per_100", "missing_share")
MIN_COVERAGE = 0.5  # below this share of blocks found in the table, tier 1 is used instead
RIDGE = 1e-3


def _kernels(space: Space, arch: Arch) -> int:
    return sum(layer.kernels for layer in network_layers(space, arch))


@dataclass(frozen=True)
class BlockTable:
    """Block key -> in-context time (us), a fallback ratio and the residual coefficients."""

    lut_us: tuple[tuple[str, float], ...]
    fallback_ratio: float
    coef: tuple[float, ...] = (0.0,) * len(RESIDUAL_FEATURES)
    min_coverage: float = MIN_COVERAGE

    @functools.cached_property
    def table(self) -> dict[str, float]:
        return dict(self.lut_us)

    def table_sum(self, space: Space, arch: Arch,
                  tier1: Tier1) -> tuple[float, float]:
        """(table sum in ms with fallbacks, share of blocks not in the table)."""
        total, missing = 0.0, []
        keys = block_keys(space, arch)
        for name, key in keys:
            if key in self.table:
                total += self.table[key] * 1e-3
            else:
                missing.append(name)
        share = len(missing) / len(keys)
        if missing and share <= 1.0 - self.min_coverage:  # else the caller uses tier 1
            fallback = tier1_block_ms(space, arch, tier1)
            total += sum(fallback[name] for name in missing) * self.fallback_ratio
        return total, share

    def features(self, space: Space, arch: Arch, tier1: Tier1) -> list[float]:
        total, missing = self.table_sum(space, arch, tier1)
        return [1.0, math.log(total), _kernels(space, arch) / 100.0, missing]

    def predict_ms(self, space: Space, arch: Arch, tier1: Tier1) -> float | None:
        """Tier-2 latency, or None when too few of the blocks were measured."""
        total, missing = self.table_sum(space, arch, tier1)
        if 1.0 - missing < self.min_coverage:
            return None
        phi = [1.0, math.log(total), _kernels(space, arch) / 100.0, missing]
        return math.exp(phi[1] + sum(c * f for c, f in zip(self.coef, phi)))

    def to_dict(self) -> dict:
        return {"lut_us": {k: round(v, 3) for k, v in self.lut_us},
                "fallback_ratio": self.fallback_ratio, "min_coverage": self.min_coverage,
                "residual": {"target": "log(measured_ms / table_sum_ms)",
                             "features": list(RESIDUAL_FEATURES), "coef": list(self.coef)}}

    @classmethod
    def from_dict(cls, d: dict) -> "BlockTable":
        return cls(tuple((str(k), float(v)) for k, v in d["lut_us"].items()),
                   float(d["fallback_ratio"]), tuple(float(c) for c in d["residual"]["coef"]),
                   float(d.get("min_coverage", MIN_COVERAGE)))


def fit_block_table(space: Space, archs: Sequence[Arch],
                    block_us: Sequence[dict[str, float]], measured_ms: Sequence[float],
                    tier1: Tier1) -> BlockTable:
    """Median in-context time per key, the tier-1 fallback ratio, then the residual fit."""
    import numpy as np

    samples: dict[str, list[float]] = {}
    ratios = []
    for arch, blocks in zip(archs, block_us):
        t1 = tier1_block_ms(space, arch, tier1)
        for name, key in block_keys(space, arch):
            if name in blocks:
                samples.setdefault(key, []).append(blocks[name])
                if t1.get(name, 0) > 0:
                    ratios.append(blocks[name] * 1e-3 / t1[name])
    table = BlockTable(tuple(sorted((k, median(v)) for k, v in samples.items())),
                       median(ratios) if ratios else 1.0)
    phi = np.array([table.features(space, a, tier1) for a in archs])
    target = np.log(np.asarray(measured_ms)) - phi[:, 1]
    # Ridge keeps the residual tame when few subnets were measured; intercept unpenalised.
    penalty = RIDGE * len(target) * np.diag([0.0] + [1.0] * (phi.shape[1] - 1))
    coef = np.linalg.solve(phi.T @ phi + penalty, phi.T @ target)
    return BlockTable(table.lut_us, table.fallback_ratio, tuple(float(c) for c in coef))
