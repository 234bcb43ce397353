"""The torch side of each network family (``gtn_deploy.spaces``): its student and supernet.

Everything that builds a network from a space goes through here. The registry names each
family's torch module (``Family.supernet``: ``supernet/<family>.py``), which provides
``build_student(space, arch)`` and ``build_supernet(space, kernel_transform=False)``; it is
imported when a network of that family is first built, so the registry stays torch-free.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import nn

from gtn_deploy.spaces import Arch, Space, family_of


def torch_side(space: Space) -> ModuleType:
    """The module that builds ``space``'s family's networks."""
    return importlib.import_module(family_of(space).supernet)


def build_student(space: Space, arch: Arch) -> nn.Module:
    """A static student of ``arch`` with fresh weights."""
    return torch_side(space).build_student(space, arch)


def create_supernet(space: Space, kernel_transform: bool = False) -> nn.Module:
    """The weight-sharing supernet of ``space`` (``kernel_transform``: MBConv's elastic
    kernel; other families ignore it)."""
    return torch_side(space).build_supernet(space, kernel_transform=kernel_transform)
