"""Analytic cost of an architecture of any family: per-layer FLOPs, parameters and
activations (no torch).

The cost model asks the family: each space costs its own blocks (``Space.network_costs``,
``Space.block_keys``) in ``gtn_deploy.spaces.base``'s types, re-exported here. FLOPs count 2
per multiply-accumulate of convolutions and linears only, which is exactly what
``torch.utils.flop_counter.FlopCounterMode`` counts; the supernet tests check params exactly
and FLOPs to 2% against the real modules.
"""

from __future__ import annotations

from gtn_deploy.spaces.base import (Arch, BlockCost, BlockShape, Layer, NetCost, Space,
                                    net_cost)

__all__ = ["BlockCost", "BlockShape", "Layer", "NetCost", "network_costs", "network_layers",
           "network_cost", "block_keys"]


def network_costs(space: Space, arch: Arch) -> tuple[BlockCost, ...]:
    """Per-block costs of ``arch`` (no validation: call space.validate first)."""
    return space.network_costs(arch)


def network_layers(space: Space, arch: Arch) -> tuple[Layer, ...]:
    """Every layer of ``arch`` in execution order."""
    return tuple(layer for block in space.network_costs(arch) for layer in block.layers)


def network_cost(space: Space, arch: Arch) -> NetCost:
    """Totals and the per-layer breakdown of ``arch``."""
    return net_cost(space.network_costs(arch))


def block_keys(space: Space, arch: Arch) -> list[tuple[str, str]]:
    """(block name, lookup-table key) per block of ``arch``."""
    return space.block_keys(arch)
