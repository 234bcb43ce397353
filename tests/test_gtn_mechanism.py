"""The conditioning's mechanism, pinned: what reaches the teacher from the branches, by how
much, the half-batch estimate, and a sampler that learns from the real, noisy reward."""

from __future__ import annotations

import random

import pytest
import torch

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.models import create_teacher
from gtn_deploy.supernet import Supernet
from gtn_deploy.train.gtn import LossWeights, TeacherObjective
from gtn_deploy.train.sampler import ArchSampler

SPACE = get_space("digits")


def _objective(**weights) -> TeacherObjective:
    torch.manual_seed(0)
    obj = TeacherObjective("gtn", create_teacher("resnet20", SPACE.task), Supernet(SPACE), 28,
                           LossWeights(**weights))
    with torch.no_grad():  # at init every branch predicts ~uniform: make the KL matter
        for p in obj.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return obj.train()


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _branch_grads(obj: TeacherObjective, params, **forward) -> list[torch.Tensor]:
    """The gradient the branch terms alone send into ``params``: the whole loss's minus
    the teacher CE's (branch_scale 0 runs the same forward with the branches weighted 0)."""
    x, y = _batch()
    arch = SPACE.sample(random.Random(3))

    def grads(scale: float) -> list[torch.Tensor]:
        obj.zero_grad(set_to_none=True)
        loss, _ = obj(x, y, [arch], branch_scale=scale, which=[1], **forward)
        loss.backward()
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    return [a - b for a, b in zip(grads(1.0), grads(0.0))]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal to float32 rounding: each gradient here is a difference of two backward passes,
    so elementwise tolerances fail on the small entries; the tensor's norm is the scale."""
    return float((a - b).norm()) <= 1e-3 * float(b.norm()) + 1e-9


def test_detached_kl_sends_no_gradient_to_the_teacher_logits():
    # the teacher's head sees only the logits: the branches reach it through the KL alone
    detached = _objective(kl_detach=True)
    head = list(detached.teacher.head.parameters())
    assert all(float(g.abs().max()) == 0.0 for g in _branch_grads(detached, head))
    attached = _objective(kl_detach=False)
    head = list(attached.teacher.head.parameters())
    assert max(float(g.abs().max()) for g in _branch_grads(attached, head)) > 1e-4


@pytest.mark.parametrize("scale", [0.1, 0.3])
def test_teacher_grad_scales_the_feature_gradient_by_exactly_its_value(scale):
    # KL detached: the branches reach the teacher through its features only
    full = _objective(kl_detach=True, teacher_grad=1.0)
    body = [p for n, p in full.teacher.named_parameters() if not n.startswith("head")]
    g_full = _branch_grads(full, body)
    scaled = _objective(kl_detach=True, teacher_grad=scale)
    body = [p for n, p in scaled.teacher.named_parameters() if not n.startswith("head")]
    g_scaled = _branch_grads(scaled, body)
    total = sum(float(g.abs().sum()) for g in g_full)
    assert total > 1e-3  # the branches do reach the features
    for a, b in zip(g_full, g_scaled):
        assert _close(b, scale * a)


def test_teacher_pull_zero_keeps_every_branch_gradient_off_the_teacher():
    obj = _objective(kl_detach=False, teacher_grad=1.0)
    teacher = list(obj.teacher.parameters())
    assert all(float(g.abs().max()) == 0.0 for g in _branch_grads(obj, teacher, teacher_pull=0.0))
    half = _branch_grads(obj, teacher, teacher_pull=0.5)
    full = _branch_grads(obj, teacher, teacher_pull=1.0)
    for a, b in zip(full, half):
        assert _close(b, 0.5 * a)
    # and the branches themselves learn as much either way
    side = list(obj.branches.parameters())
    for a, b in zip(_branch_grads(obj, side, teacher_pull=0.0),
                    _branch_grads(obj, side, teacher_pull=1.0)):
        assert _close(a, b)


@torch.no_grad()
def test_the_half_batch_branch_estimate_is_unbiased():
    """Over the rotations of a batch every image is in the first half equally often, so the
    mean of the half-batch estimates is exactly the whole batch's branch loss (BN from running
    statistics, so an image's loss does not depend on its batch-mates)."""
    half = _objective(branch_batch=0.5).eval()
    whole = _objective(branch_batch=1.0).eval()
    x, y = _batch(8)
    arch = SPACE.sample(random.Random(5))
    _, full = whole(x, y, [arch], which=[0])
    estimates = [float(half(torch.roll(x, k, 0), torch.roll(y, k, 0), [arch], which=[0])[1][2])
                 for k in range(8)]
    assert sum(estimates) / 8 == pytest.approx(float(full[2]), rel=1e-5)
    assert max(estimates) - min(estimates) > 1e-4  # each half alone does differ


def _noisy_sampler(seed: int, grouped: bool, steps: int = 600) -> float:
    """A toy with the real reward's shape: each step draws one of three branches, whose KLs
    differ by far more than the architectures' do; kernel 3 in the first block really lowers
    the KL by 0.05. The pool pulls toward kernel 3 everywhere (the planned students)."""
    sampler = ArchSampler(SPACE, "learned", [SPACE.min_arch()], seed=seed, lr=1e-2, beta=0.05,
                          gamma=0.1)
    rng = random.Random(seed)
    branch_kl = (0.6, 0.3, 0.1)
    for _ in range(steps):
        archs = sampler.sample(1)
        b = rng.randrange(3)
        rewards = [branch_kl[b] + 0.05 * (a.kernel_sizes[0] != 3) + rng.gauss(0, 0.02)
                   for a in archs]
        sampler.update(archs, rewards, b if grouped else 0)
    return sampler.probabilities()["kernel.0.0"]["3"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sampler_moves_on_the_real_noisy_reward(seed):
    # it ascends the mismatch: the decision that lowers the KL loses probability, from 1/3
    # to under 0.15, against the pool's pull toward it (0.05-0.08 in this toy, every seed)
    assert _noisy_sampler(seed, grouped=True) < 0.15
