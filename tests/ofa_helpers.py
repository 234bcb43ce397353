"""Once-for-All's own networks (the PyPI package ``ofa``) for the import tests.

``ofa``'s package imports its ImageNet data loader, which imports torchvision; torchvision is
not installed here (its wheels pin another torch). The tests stand in for that one import
with empty modules before ``ofa`` loads; OFA's networks are its own code, untouched.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

TORCHVISION = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
               "torchvision.datasets")


class _Placeholder(types.ModuleType):
    """Any attribute is an empty class: OFA's loader subclasses transforms at import."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})


def _stand_in_for_torchvision() -> None:
    try:
        import torchvision  # noqa: F401  # the real one, where it is installed
        return
    except ImportError:
        pass
    for name in TORCHVISION:
        sys.modules.setdefault(name, _Placeholder(name))
    for name in TORCHVISION[1:]:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, sys.modules[name])


def ofa_networks():
    """``ofa.imagenet_classification.elastic_nn.networks`` (skips the test without ``ofa``)."""
    pytest.importorskip("ofa", reason="needs the 'ofa' package (pip install -e '.[dev]')")
    _stand_in_for_torchvision()
    from ofa.imagenet_classification.elastic_nn import networks

    return networks


def random_ofa_mbv3(width_mult: float = 1.0, seed: int = 0):
    """OFA's OFAMobileNetV3 (d234 e346 k357) with random weights and kernel transform
    matrices, BN statistics measured for its largest subnet (``calibrate_ofa_bn``)."""
    networks = ofa_networks()
    net = networks.OFAMobileNetV3(n_classes=1000, dropout_rate=0, width_mult=width_mult,
                                  ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                                  depth_list=[2, 3, 4])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point() or "running_" in name:
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith("_matrix"):  # near the identity, as trained ones are
                tensor.copy_(torch.eye(tensor.shape[0]) + 0.2 * noise)
            elif tensor.dim() == 1:  # BN affine and biases
                tensor.copy_((1.0 if "bn" in name and name.endswith("weight") else 0.0)
                             + 0.1 * noise)
            elif name.startswith("classifier"):  # OFA's: uniform(+-1/sqrt(fan_in))
                tensor.uniform_(-tensor.shape[1] ** -0.5, tensor.shape[1] ** -0.5,
                                generator=gen)
            else:  # He initialisation
                tensor.copy_(noise * (2.0 / tensor[0].numel()) ** 0.5)
    net.set_max_net()
    calibrate_ofa_bn(net, torch.randn(4, 3, 224, 224, generator=gen))
    return net


@torch.no_grad()
def calibrate_ofa_bn(net, images: torch.Tensor) -> None:
    """BN statistics of OFA's active subnet measured on ``images`` (as OFA recalibrates a
    subnet before it evaluates it), so activations keep their scale through 20 blocks and
    the logits depend on the input: a wrongly mapped tensor then changes them by far more
    than the tolerance. Leaves ``net`` in eval mode."""
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net(images)
    net.eval()


def save_as_published(net, path) -> None:
    """Write ``{"state_dict": ...}`` as OFA publishes its supernets (``torch.save``)."""
    torch.save({"state_dict": net.state_dict()}, path)


def ofa_arch_dict(arch, max_depth: int = 4) -> dict:
    """Our ArchConfig as the keyword arguments of OFA's ``set_active_subnet``."""
    doc = arch.to_ofa(max_depth)
    return {"ks": doc["ks"], "e": doc["e"], "d": doc["d"]}


def _randomise(net, gen: torch.Generator) -> None:
    """Random weights as ``random_ofa_mbv3`` draws them (He convs, OFA's classifier)."""
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point() or "running_" in name:
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if tensor.dim() == 1:
                tensor.copy_((1.0 if "bn" in name and name.endswith("weight") else 0.0)
                             + 0.1 * noise)
            elif name.startswith("classifier"):
                tensor.uniform_(-tensor.shape[1] ** -0.5, tensor.shape[1] ** -0.5,
                                generator=gen)
            else:
                tensor.copy_(noise * (2.0 / tensor[0].numel()) ** 0.5)


def random_ofa_resnet50(seed: int = 0):
    """OFA's OFAResNets as ``ofa_resnet50`` is built (depth +0/1/2, expand 0.2/0.25/0.35,
    width 0.65/0.8/1.0), random weights, BN statistics of its largest subnet."""
    net = ofa_networks().OFAResNets(n_classes=1000, dropout_rate=0, depth_list=[0, 1, 2],
                                    expand_ratio_list=[0.2, 0.25, 0.35],
                                    width_mult_list=[0.65, 0.8, 1.0])
    gen = torch.Generator().manual_seed(seed)
    _randomise(net, gen)
    net.set_max_net()
    calibrate_ofa_bn(net, torch.randn(2, 3, 160, 160, generator=gen))
    return net


def ofa_resnet_arch(arch, space) -> dict:
    """Our ResNetArch as OFA's ``set_active_subnet`` arguments: the stem at its largest
    (``d[0]`` = 2, ``w[0]`` = ``w[1]`` = 1.0), widths as indices, an expand ratio per slot."""
    expands = []
    for stage, es in enumerate(arch.stage_expands()):
        expands += list(es) + [0.25] * (space.max_depth(stage) - len(es))  # slots not run
    base = [s.base_depth for s in space.stages]
    widths = [space.width_choices.index(w) for w in arch.width_mults]
    return {"d": [2] + [d - b for d, b in zip(arch.depths, base)], "e": expands,
            "w": [2, 2] + widths}
