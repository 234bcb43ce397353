"""Network families: one module a family, registered here (no torch).

A family provides its search space for a task (``SearchSpace``-like: sample, mutate,
crossover, validate, max/min arch, ``arch_from_dict``), the arch type, and its own analytic
cost in ``cost.analytic``'s types; its torch side (supernet, student) lives in
``gtn_deploy.supernet`` under the same family name. ``mbconv`` (Once-for-All MobileNetV3) is
``gtn_deploy.arch``; ``resnet`` (Once-for-All ResNets) is ``spaces.resnet``.
"""

from __future__ import annotations

from typing import Any, Callable

from gtn_deploy.arch import NAMED_SPACES, SPACES, get_space
from gtn_deploy.constants import DEFAULT_FAMILY
from gtn_deploy.errors import UsageError
from gtn_deploy.spaces.resnet import RESNET_SPACES, resnet_space

# family -> its space for a task
FAMILIES: dict[str, Callable[[str], Any]] = {DEFAULT_FAMILY: get_space, "resnet": resnet_space}
# every registered space by the name documents record
_BY_NAME = {**SPACES, **NAMED_SPACES, **{s.name: s for s in RESNET_SPACES.values()}}


def create_space(family: str, task: str):
    """The search space of ``family`` for ``task``; a bad name is one UsageError line."""
    if family not in FAMILIES:
        raise UsageError(f"unknown --space '{family}'; valid: {', '.join(FAMILIES)}")
    return FAMILIES[family](task)


def space_by_name(name: str):
    """A space by the name documents record (``fashion-mnist``, ``resnet-fashion-mnist``)."""
    if name not in _BY_NAME:
        raise UsageError(f"unknown space '{name}'; valid spaces: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def family_of(space) -> str:
    return getattr(space, "family", DEFAULT_FAMILY)


def family_free(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without its ``space`` key when that is the first family: such a config,
    checkpoint check or pipeline stage key is then the one a run from before families
    wrote, so those runs still resume and their stages stay cached."""
    if config.get("space") == DEFAULT_FAMILY:
        config.pop("space")
    return config


def supernet_space(directory):
    """The space a supernet folder was built for, read from its ``supernet.json`` alone (no
    torch: ``gtnd plan --supernet`` runs where torch is not installed)."""
    import json
    from pathlib import Path

    from gtn_deploy.arch import space_with_classes
    from gtn_deploy.errors import CheckpointError

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
            family_of(space) == DEFAULT_FAMILY:
        space = space_with_classes(space, classes)
    return space

