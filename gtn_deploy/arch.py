"""What every network family shares: the tasks (input shape, classes, normalisation; no torch).

Each family's space and arch types live in ``gtn_deploy.spaces`` (``spaces.mbconv``,
``spaces.resnet``); a space is built for one of these tasks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """What the network sees and predicts: input shape, classes, normalisation."""

    name: str
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool
    dataset: str  # the data loader's name for it (see gtn_deploy.data)


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

TASKS: dict[str, TaskSpec] = {
    "fashion-mnist": TaskSpec("fashion-mnist", 1, 10, (0.2860,), (0.3530,), False, "fashion-mnist"),
    "digits": TaskSpec("digits", 1, 10, (0.3000,), (0.3800,), False, "digits"),
    "cifar10": TaskSpec("cifar10", 3, 10, _CIFAR_MEAN, _CIFAR_STD, True, "cifar10"),
    "cifar100": TaskSpec("cifar100", 3, 100, (0.5071, 0.4865, 0.4409),
                         (0.2673, 0.2564, 0.2762), True, "cifar100"),
    "imagenet": TaskSpec("imagenet", 3, 1000, _IMAGENET_MEAN, _IMAGENET_STD, True, "imagefolder"),
}
