"""Network families: one module a family, registered here once (no torch).

A family is a ``spaces/<family>.py`` (its ``Space`` and ``Arch`` types, see
``spaces.base``, with its own analytic cost), a torch side ``supernet/<family>.py`` (its
``build_student(space, arch)`` and ``build_supernet(space, kernel_transform=False)``), and
one ``register(Family(...))`` line below. Generic code asks a space for what it needs, and
asks this registry, by family or by space, for the rest: nothing else tests a family's name.
``mbconv`` (Once-for-All MobileNetV3) is ``spaces.mbconv``; ``resnet`` (Once-for-All
ResNets) is ``spaces.resnet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from gtn_deploy.constants import DEFAULT_FAMILY
from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.spaces import mbconv, resnet
from gtn_deploy.spaces.base import Arch, Space

__all__ = ["Arch", "Space", "Family", "FAMILIES", "DEFAULT_FAMILY", "register", "family",
           "family_of", "create_space", "space_by_name", "budget_reference", "family_free",
           "supernet_space"]


@dataclass(frozen=True)
class Family:
    """What the registry knows of one family."""

    name: str
    space_for_task: Callable[[str], Space]  # a task's space; an unknown task: one UsageError
    task_spaces: Mapping[str, Space]  # every task's space, by task name
    supernet: str  # the torch side's module: build_student, build_supernet
    named_spaces: Mapping[str, Space] = field(default_factory=dict)  # no task's default
    # supernet folders record their classes; this family rebuilds its space for them
    reclass_supernets: bool = False

    def spaces(self) -> dict[str, Space]:
        """Every space of the family by the name documents record."""
        return {**{s.name: s for s in self.task_spaces.values()}, **self.named_spaces}


FAMILIES: dict[str, Family] = {}


def register(entry: Family) -> Family:
    """Add a family (a second registration of one name replaces the first)."""
    FAMILIES[entry.name] = entry
    return entry


register(Family(DEFAULT_FAMILY, mbconv.get_space, mbconv.SPACES, "gtn_deploy.supernet.network",
                mbconv.NAMED_SPACES, reclass_supernets=True))
register(Family("resnet", resnet.resnet_space, resnet.RESNET_SPACES,
                "gtn_deploy.supernet.resnet"))


def family(name: str) -> Family:
    """A family by name; a bad name is one UsageError line."""
    if name not in FAMILIES:
        raise UsageError(f"unknown --space '{name}'; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(space: Space) -> Family:
    """The family a space belongs to."""
    return family(getattr(space, "family", DEFAULT_FAMILY))


def create_space(family_name: str, task: str) -> Space:
    """The search space of ``family_name`` for ``task``; a bad name is one UsageError line."""
    return family(family_name).space_for_task(task)


def space_by_name(name: str) -> Space:
    """A space by the name documents record (``fashion-mnist``, ``resnet-fashion-mnist``)."""
    by_name = {n: s for f in FAMILIES.values() for n, s in f.spaces().items()}
    if name not in by_name:
        raise UsageError(f"unknown space '{name}'; valid spaces: {', '.join(by_name)}")
    return by_name[name]


def budget_reference(task: str) -> tuple[Space, Space] | None:
    """The two spaces a profile's latency budget is carried over between (``gtnd plan
    --scale-budget``): ``task``'s and ImageNet's, both of the first family, whatever family
    is searched: the budget is the task's on the device, and one reference for every family
    keeps one device's budget the same across them. None: the task has no such space."""
    spaces = FAMILIES[DEFAULT_FAMILY].task_spaces
    if task not in spaces or "imagenet" not in spaces:
        return None
    return spaces[task], spaces["imagenet"]


def family_free(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without its ``space`` key when that is the first family: such a config,
    checkpoint check or pipeline stage key is then the one a run from before families
    wrote, so those runs still resume and their stages stay cached."""
    if config.get("space") == DEFAULT_FAMILY:
        config.pop("space")
    return config


def supernet_space(directory: str | Path) -> Space:
    """The space a supernet folder was built for, read from its ``supernet.json`` alone (no
    torch: ``gtnd plan --supernet`` runs where torch is not installed)."""
    path = Path(directory) / "supernet.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.__class__.__name__}); is "
                              f"{directory} a supernet folder?") from None
    if not isinstance(doc, dict) or doc.get("kind") != "gtn_deploy.supernet":
        raise CheckpointError(f"{path}: not a gtn_deploy supernet sidecar")
    try:
        space = space_by_name(str(doc.get("space")))
    except UsageError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    classes = doc.get("num_classes")
    if isinstance(classes, int) and classes != space.task.num_classes and \
            family_of(space).reclass_supernets:
        space = space.with_classes(classes)
    return space
