"""Network families: one module a family, registered here (no torch).

A family provides its search space for a task (``SearchSpace``-like: sample, mutate,
crossover, validate, max/min arch, ``arch_from_dict``), the arch type, and its own analytic
cost in ``cost.analytic``'s types; its torch side (supernet, student) lives in
``gtn_deploy.supernet`` under the same family name. ``mbconv`` (Once-for-All MobileNetV3) is
``gtn_deploy.arch``; ``resnet`` (Once-for-All ResNets) is ``spaces.resnet``.
"""

from __future__ import annotations

from typing import Any, Callable

from gtn_deploy.arch import SPACES, get_space
from gtn_deploy.errors import UsageError
from gtn_deploy.spaces.resnet import RESNET_SPACES, resnet_space

DEFAULT_FAMILY = "mbconv"
# family -> its space for a task
FAMILIES: dict[str, Callable[[str], Any]] = {"mbconv": get_space, "resnet": resnet_space}


def create_space(family: str, task: str):
    """The search space of ``family`` for ``task``; a bad name is one UsageError line."""
    if family not in FAMILIES:
        raise UsageError(f"unknown --space '{family}'; valid: {', '.join(FAMILIES)}")
    return FAMILIES[family](task)


def space_by_name(name: str):
    """A space by the name documents record (``fashion-mnist``, ``resnet-fashion-mnist``)."""
    spaces = {**SPACES, **{s.name: s for s in RESNET_SPACES.values()}}
    if name not in spaces:
        raise UsageError(f"unknown space '{name}'; valid spaces: {', '.join(spaces)}")
    return spaces[name]


def family_of(space) -> str:
    return getattr(space, "family", DEFAULT_FAMILY)
