"""Teachers by name: ``create_teacher(name, task)``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from gtn_deploy.arch import TaskSpec
from gtn_deploy.errors import UsageError
from gtn_deploy.models.resnet import CifarResNet, ImageNetResNet, WideResNet

_Factory = Callable[[str, int, int], nn.Module]

_FACTORIES: dict[str, _Factory] = {
    "resnet20": lambda n, c, k: CifarResNet(n, 20, (16, 16, 32, 64), c, k),
    "resnet8x4": lambda n, c, k: CifarResNet(n, 8, (32, 64, 128, 256), c, k),
    "resnet32x4": lambda n, c, k: CifarResNet(n, 32, (32, 64, 128, 256), c, k),
    "wrn_16_2": lambda n, c, k: WideResNet(n, 16, 2, c, k),
    "wrn_40_2": lambda n, c, k: WideResNet(n, 40, 2, c, k),
    "resnet18": lambda n, c, k: ImageNetResNet(n, (2, 2, 2, 2), c, k),
    "resnet34": lambda n, c, k: ImageNetResNet(n, (3, 4, 6, 3), c, k),
}

TEACHERS: tuple[str, ...] = tuple(_FACTORIES)
# Small inputs (28-32 px) get CIFAR-style teachers; 128-224 px get the ImageNet layout.
SMALL_INPUT_TEACHERS = ("resnet20", "resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2")
LARGE_INPUT_TEACHERS = ("resnet18", "resnet34")


def create_teacher(name: str, task: TaskSpec) -> nn.Module:
    """A randomly initialised teacher for ``task`` (its input channels and classes)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise UsageError(f"unknown teacher '{name}'; valid teachers: {', '.join(TEACHERS)}") \
            from None
    return factory(name, task.in_channels, task.num_classes)
