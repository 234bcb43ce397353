"""The torch side of each network family (``gtn_deploy.spaces``): its student and supernet.

Everything that builds a network from a space goes through here, so a family is one module
in ``supernet/`` plus one line in each function below.
"""

from __future__ import annotations

from torch import nn


def build_student(space, arch) -> nn.Module:
    """A static student of ``arch`` with fresh weights."""
    if space.family == "resnet":
        from gtn_deploy.supernet.resnet import build_student as resnet_student

        return resnet_student(space, arch)
    from gtn_deploy.supernet.layers import build_student as mbconv_student

    return mbconv_student(space, arch)


def create_supernet(space, kernel_transform: bool = False) -> nn.Module:
    """The weight-sharing supernet of ``space`` (``kernel_transform``: MBConv only)."""
    if space.family == "resnet":
        from gtn_deploy.supernet.resnet import ResNetSupernet

        return ResNetSupernet(space)
    from gtn_deploy.supernet.network import Supernet

    return Supernet(space, kernel_transform=kernel_transform)
