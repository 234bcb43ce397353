"""Cheap, faithful GTN steps: one branch per step is unbiased, clipping is per group, the
sampler's advantage is normalised and its distribution moves away from the pool prior."""

from __future__ import annotations

import random

import pytest
import torch

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.models import create_teacher
from gtn_deploy.supernet import Supernet
from gtn_deploy.train.gtn import LossWeights, TeacherObjective
from gtn_deploy.train.sampler import ArchSampler
from gtn_deploy.train.trainer import clip_groups

SPACE = get_space("digits")


@pytest.fixture(scope="module")
def objective():
    torch.manual_seed(0)
    return TeacherObjective("gtn", create_teacher("resnet20", SPACE.task), Supernet(SPACE),
                            28, LossWeights())


@torch.no_grad()
def test_one_uniform_branch_is_an_unbiased_estimate_of_all():
    torch.manual_seed(1)
    objective = TeacherObjective("gtn", create_teacher("resnet20", SPACE.task),
                                 Supernet(SPACE), 28, LossWeights())
    for p in objective.parameters():  # at init every branch predicts ~uniform: spread them
        p.add_(0.3 * torch.randn_like(p))
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    arch = SPACE.sample(random.Random(3))
    objective.train()  # BN from batch statistics: every forward computes the same network
    _, full = objective(x, y, [arch])
    n = objective.branches.num_branches
    assert n >= 3
    singles = [objective(x, y, [arch], which=[b])[1] for b in range(n)]
    # stats[2] is the branch loss; its expectation under a uniform branch equals the mean
    expected = sum(float(s[2]) for s in singles) / n
    assert expected == pytest.approx(float(full[2]), rel=1e-5)
    assert len({float(s[2]) for s in singles}) == n  # the branches do differ


def test_one_branch_runs_only_that_branch(objective):
    objective.train()
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    arch = SPACE.max_arch()
    objective.zero_grad(set_to_none=True)
    loss, _ = objective(x, y, [arch], which=[0])  # branch 0: the student from the image
    loss.backward()
    assert all(p.grad is None for p in objective.branches.adapters.parameters())
    objective.zero_grad(set_to_none=True)
    loss, _ = objective(x, y, [arch], which=[1])
    loss.backward()
    assert objective.branches.adapters[0].conv.weight.grad.abs().sum() > 0
    assert objective.supernet.stem.conv.weight.grad is None


def test_clip_groups_split_teacher_from_student_side(objective):
    groups = clip_groups(objective)
    assert set(groups) == {"teacher", "student"}
    ids = {name: {id(p) for p in params} for name, params in groups.items()}
    assert not ids["teacher"] & ids["student"]
    assert ids["teacher"] | ids["student"] == {id(p) for p in objective.parameters()}
    # a huge student-side gradient no longer shrinks the teacher's
    for p in objective.parameters():
        p.grad = torch.full_like(p, 1e-4 if id(p) in ids["teacher"] else 10.0)
    teacher_before = [p.grad.clone() for p in groups["teacher"]]
    for params in groups.values():
        torch.nn.utils.clip_grad_norm_(params, 5.0)
    assert all(torch.equal(a, p.grad) for a, p in zip(teacher_before, groups["teacher"]))
    student_norm = torch.norm(torch.stack([p.grad.norm() for p in groups["student"]]))
    assert float(student_norm) == pytest.approx(5.0, rel=1e-4)


def _train_sampler(scale: float, steps: int = 200, gamma: float = 0.1) -> ArchSampler:
    pool = [SPACE.min_arch()]  # the pool says: kernel 3 everywhere
    sampler = ArchSampler(SPACE, "learned", pool, seed=0, lr=0.05, beta=0.0, gamma=gamma)
    for _ in range(steps):
        archs = sampler.sample(2)
        # the reward (teacher-student mismatch) is highest for kernel 7 in the first block
        sampler.update(archs, [scale * (0.01 * (a.kernel_sizes[0] == 7) + 0.1)
                               for a in archs])
    return sampler


def test_advantage_normalisation_makes_updates_scale_free():
    small, large = _train_sampler(1.0, steps=40), _train_sampler(1000.0, steps=40)
    assert torch.allclose(small.theta, large.theta, atol=1e-6)


def test_learned_distribution_moves_away_from_the_pool_prior():
    sampler = _train_sampler(1.0)
    first = sampler.probabilities()["kernel.0.0"]
    prior = sampler._pool_prior[sampler._slot["kernel.0.0"]]
    assert float(prior[0]) > 0.99  # the pool alone would put kernel 3 at ~1
    assert first["7"] > 0.5, first
    # an unconstrained decision stays near the pool prior
    assert sampler.probabilities()["kernel.1.0"]["3"] > 0.8
