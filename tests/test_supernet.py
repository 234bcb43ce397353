"""Supernet: extraction equals the active subnet, gradients reach the shared weights, BN
recalibration, and the stage-wise API the GTN training uses."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch import nn

from gtn_deploy.spaces.mbconv import SPACES
from gtn_deploy.errors import ArchError, DataError
from gtn_deploy.supernet import Supernet, StudentNet, build_student, recalibrate_bn
from gtn_deploy.supernet.ops import DynamicBatchNorm2d, DynamicDepthwiseConv2d

# (task, number of random archs, kernel transform): 50 random archs over every task; the
# cifar100 supernet uses perturbed OFA kernel-transform matrices.
PLAN = [("fashion-mnist", 16, False), ("digits", 6, False), ("cifar10", 12, False),
        ("cifar100", 10, True), ("imagenet", 6, False)]
IMAGENET_RES = (128, 160)  # keep the imagenet checks cheap on CPU




def randomise(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics/affine, kernel transforms and classifier, so parity means
    something (fresh BN is the identity and the OFA linear init gives ~0 logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0),
                                  (m.weight, 0.5, 1.5), (m.bias, -0.3, 0.3)):
                    t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)
            elif isinstance(m, DynamicDepthwiseConv2d) and m.kernel_transform:
                for name, p in m.named_parameters():
                    if name.startswith("transform_"):
                        p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.05, generator=g)
    return net


@pytest.fixture(scope="module")
def supernets() -> dict[str, Supernet]:
    torch.manual_seed(0)
    return {task: randomise(Supernet(SPACES[task], kernel_transform=kt), i).eval()
            for i, (task, _, kt) in enumerate(PLAN)}


def _archs(task: str, count: int, seed: int):
    space, rng = SPACES[task], random.Random(seed)
    for _ in range(count):
        arch = space.sample(rng)
        if task == "imagenet":
            arch = dataclasses.replace(arch, resolution=rng.choice(IMAGENET_RES))
        yield arch


def _input(space, arch, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, space.task.in_channels, arch.resolution, arch.resolution,
                       generator=g)


def test_extracted_equals_active_subnet_for_50_archs(supernets):
    checked = 0
    for seed, (task, count, _) in enumerate(PLAN):
        net = supernets[task]
        for arch in _archs(task, count, seed):
            net.set_active(arch)
            student = net.extract()
            assert isinstance(student, StudentNet) and student.arch == arch
            assert not any(type(m).__module__.startswith("gtn_deploy.supernet.ops")
                           for m in student.modules()), "a dynamic op was left in the student"
            x = _input(net.space, arch, seed=checked)
            with torch.no_grad():
                want, got = net(x), student(x)
            assert want.abs().max() > 1e-2, "logits too small for the check to mean anything"
            diff = (want - got).abs().max().item()
            assert diff <= 1e-5, f"{task} {arch.summary()}: max abs diff {diff}"
            checked += 1
    assert checked >= 50


def test_max_and_min_arch_have_the_expected_extremes(supernets):
    net = supernets["cifar10"]
    active = net.active_arch
    big, small = net.extract(net.max_arch()), net.extract(net.min_arch())
    n_big = sum(p.numel() for p in big.parameters())
    n_small = sum(p.numel() for p in small.parameters())
    # Without kernel transforms the max arch uses every shared weight.
    assert n_small < n_big == sum(p.numel() for p in net.parameters())
    assert net.active_arch == active  # extract(arch) left the active arch alone


def test_sample_changes_nothing_and_set_active_validates(supernets):
    net = supernets["fashion-mnist"]
    net.set_active(net.min_arch())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = net.sample(random.Random(3))
    assert net.active_arch == net.min_arch()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert arch == net.sample(random.Random(3))
    bad = dataclasses.replace(arch, kernel_sizes=(9,) + arch.kernel_sizes[1:])
    with pytest.raises(ArchError, match="kernel size 9"):
        net.set_active(bad)
    assert net.active_arch == net.min_arch()


def test_extract_copies_weights():
    net = Supernet(SPACES["digits"])
    shared = net.stages[0].blocks[0].expand.conv.weight
    before = shared.detach().clone()
    student = net.extract()
    with torch.no_grad():
        student.stages[0].blocks[0].expand.conv.weight.add_(1.0)
    assert torch.equal(shared, before)


@pytest.mark.parametrize("kernel_transform", [False, True])
def test_training_step_matches_static_net_and_reaches_shared_weights(kernel_transform):
    """Train-mode BN (batch statistics) and backward: the loss and the gradients of the
    supernet's sliced weights equal those of the extracted student's weights."""
    torch.manual_seed(1)
    space = SPACES["fashion-mnist"]
    net = randomise(Supernet(space, kernel_transform=kernel_transform), 5).train()
    arch = space.sample(random.Random(11))
    net.set_active(arch)
    student = net.extract().train()
    x, y = _input(space, arch, batch=4), torch.tensor([0, 3, 5, 9])
    loss_s = nn.functional.cross_entropy(net(x), y)
    loss_t = nn.functional.cross_entropy(student(x), y)
    loss_s.backward()
    loss_t.backward()
    assert abs(loss_s.item() - loss_t.item()) < 1e-5
    block = net.stages[2].blocks[0]
    w_static = student.stages[2].blocks[0].project.conv.weight
    assert torch.allclose(block.project.conv.weight.grad[:, : w_static.size(1)],
                          w_static.grad, atol=1e-6)
    assert block.project.conv.weight.grad[:, w_static.size(1):].abs().sum() == 0
    dw = block.depthwise.conv
    if kernel_transform and arch.kernel_sizes[sum(arch.depths[:2])] < 7:
        assert dw.transform_7to5.grad is not None and dw.transform_7to5.grad.abs().sum() > 0
    # Train mode updated only the active slice of the shared running statistics.
    bn = block.expand.bn
    mid = student.stages[2].blocks[0].expand.bn.num_features
    assert torch.allclose(bn.running_mean[:mid], student.stages[2].blocks[0].expand.bn
                          .running_mean, atol=1e-6)


def test_dynamic_bn_updates_only_its_slice():
    bn = DynamicBatchNorm2d(8).train()
    before = bn.running_mean.clone()
    bn(torch.randn(4, 5, 3, 3) + 2.0)
    assert (bn.running_mean[:5] != before[:5]).all() and torch.equal(bn.running_mean[5:],
                                                                       before[5:])


def test_recalibrate_bn_student_and_supernet_agree():
    torch.manual_seed(2)
    space = SPACES["cifar10"]
    net = randomise(Supernet(space), 7).eval()
    arch = space.sample(random.Random(4))
    net.set_active(arch)
    student = net.extract().eval()
    batches = [(_input(space, arch, batch=8, seed=s), None) for s in range(3)]
    assert recalibrate_bn(student, batches) == 3
    assert recalibrate_bn(net, iter(batches), max_batches=3) == 3
    assert not student.training and not net.training
    assert all(m.momentum == 0.1 for m in student.modules() if isinstance(m, nn.BatchNorm2d))
    # Cumulative average: the stem BN's running mean is the mean of the per-batch means.
    with torch.no_grad():
        means = [student.stem.conv(x).mean((0, 2, 3)) for x, _ in batches]
    assert torch.allclose(student.stem.bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    x = _input(space, arch, seed=9)
    with torch.no_grad():
        assert (net(x) - student(x)).abs().max().item() <= 1e-4
    with pytest.raises(DataError):
        recalibrate_bn(student, [])


def test_stagewise_api_matches_forward(supernets):
    for task in ("fashion-mnist", "cifar10"):
        net = supernets[task]
        arch = net.sample(random.Random(8))
        net.set_active(arch)
        student = net.extract()
        x = _input(net.space, arch)
        with torch.no_grad():
            h = net.stem_forward(x)
            assert h.shape[1] == net.stage_in_channels(0)
            assert torch.equal(net(x), net.forward_from(h, 0))
            feats, logits = net.forward_features(x)
            assert torch.allclose(logits, net(x))
            for s in range(net.space.num_stages):
                h_s = feats[s - 1] if s else h
                assert h_s.shape[1] == net.stage_in_channels(s)
                assert h_s.shape[-1] == -(-arch.resolution // net.stage_in_stride(s))
                assert torch.allclose(net.forward_from(h_s, s), logits, atol=1e-5)
                assert torch.allclose(student.forward_from(h_s, s), logits, atol=1e-5)
            assert [f.shape[1] for f in feats] == net.stage_channels
            assert [arch.resolution // f.shape[-1] for f in feats] == net.stage_strides


def test_build_student_matches_extract_structure():
    space = SPACES["cifar100"]
    arch = space.sample(random.Random(5))
    a, b = build_student(space, arch), Supernet(space).extract(arch)
    assert {k: v.shape for k, v in a.state_dict().items()} == \
        {k: v.shape for k, v in b.state_dict().items()}
