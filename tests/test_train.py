"""GTN pieces: losses, the path sampler, branches and the gradient path into the teacher."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.errors import UsageError
from gtn_deploy.models import create_teacher
from gtn_deploy.supernet import Supernet
from gtn_deploy.train import losses
from gtn_deploy.train.branches import branch_points
from gtn_deploy.train.gtn import LossWeights, TeacherObjective
from gtn_deploy.train.sampler import ArchSampler, entropy_of_uniform

SPACE = get_space("digits")




def test_kd_kl_matches_definition_and_reaches_both():
    t = torch.randn(6, 10, requires_grad=True)
    s = torch.randn(6, 10, requires_grad=True)
    tau = 2.0
    p = F.softmax(t / tau, 1)
    manual = (p * (F.log_softmax(t / tau, 1) - F.log_softmax(s / tau, 1))).sum(1).mean() * tau**2
    got = losses.kd_kl(t, s, tau)
    assert torch.allclose(got, manual, atol=1e-6)
    got.backward()
    assert t.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
    assert float(losses.kd_kl(t, t, tau).detach()) == pytest.approx(0.0, abs=1e-6)


def test_conditioning_loss_formula():
    z, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    qs = [torch.randn(8, 10) for _ in range(3)]
    got = losses.conditioning_loss(z, qs, y, l_ce=0.5, l_kl=3.0, tau=2.0)
    branch = sum(0.5 * F.cross_entropy(q, y) + 3.0 * losses.kd_kl(z, q, 2.0) for q in qs) / 3
    assert torch.allclose(got, F.cross_entropy(z, y) + branch, atol=1e-5)
    kd = losses.distillation_loss(qs[0], z, y, alpha=0.9, temperature=4.0)
    assert torch.allclose(kd, 0.1 * F.cross_entropy(qs[0], y) + 0.9 * losses.kd_kl(z, qs[0], 4.0))


def test_sampler_modes():
    uniform = ArchSampler(SPACE, "uniform", seed=0)
    archs = uniform.sample(20)
    assert all(SPACE.validate(a) for a in archs) and len(set(archs)) > 15
    sandwich = ArchSampler(SPACE, "sandwich").sample(3)
    assert sandwich[:2] == [SPACE.max_arch(), SPACE.min_arch()]
    pool = [SPACE.sample(random.Random(i)) for i in range(3)]
    assert set(ArchSampler(SPACE, "pool", pool, seed=1).sample(30)) == set(pool)
    assert ArchSampler(SPACE, "fixed", pool[1:]).sample(2) == [pool[1], pool[1]]
    with pytest.raises(UsageError, match="valid samplers: uniform"):
        ArchSampler(SPACE, "greedy")
    with pytest.raises(UsageError, match="--pool"):
        ArchSampler(SPACE, "pool")
    assert float(uniform.entropy().detach()) == pytest.approx(entropy_of_uniform(SPACE))


def test_learned_sampler_ascends_the_reward():
    sampler = ArchSampler(SPACE, "learned", seed=0, lr=0.05, beta=0.0)
    for _ in range(150):  # reward: deeper first stage = bigger teacher-student KL
        archs = sampler.sample(2)
        sampler.update(archs, [float(a.depths[0]) for a in archs])
    probs = sampler.probabilities()["depth.0"]
    assert probs["3"] > 0.6 > probs["1"]
    assert probs["3"] > max(sampler.probabilities()["depth.1"].values()) - 0.2


def test_pool_prior_pulls_theta_toward_the_pool():
    pool = [SPACE.min_arch()]
    sampler = ArchSampler(SPACE, "learned", pool, seed=0, lr=0.05, beta=0.0, gamma=1.0)
    before = float(sampler.pool_kl().detach())
    for _ in range(50):
        archs = sampler.sample(2)
        sampler.update(archs, [0.0, 0.0])
    assert float(sampler.pool_kl().detach()) < 0.5 * before
    assert sampler.probabilities()["kernel.0.0"]["3"] > 0.5


def test_sampler_state_roundtrip_continues_identically():
    a = ArchSampler(SPACE, "learned", seed=3)
    for _ in range(5):
        archs = a.sample(2)
        a.update(archs, [0.3, 0.1])
    b = ArchSampler(SPACE, "learned", seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        xa, xb = a.sample(2), b.sample(2)
        assert xa == xb
        a.update(xa, [0.2, 0.5])
        b.update(xb, [0.2, 0.5])
    assert torch.equal(a.theta, b.theta) and a.baseline == b.baseline


def test_branch_points_match_resolution_then_depth():
    # resnet20 on 28 px: stage outputs 28, 14, 7; small space stage inputs 28, 14, 14, 7
    assert branch_points([28, 14, 7], [28, 14, 14, 7]) == [(0, 1), (1, 2)]
    assert branch_points([16, 8, 4, 2], [16, 8, 4, 2]) == [(0, 1), (1, 2), (2, 3)]


@pytest.fixture(scope="module")
def objective():
    torch.manual_seed(0)
    teacher = create_teacher("resnet20", SPACE.task)
    return TeacherObjective("gtn", teacher, Supernet(SPACE), 28, LossWeights(l_kl=0.0))


def test_branch_loss_trains_the_teacher(objective):
    """Branch CE alone (no KL, no teacher CE) must reach the stages that feed branches."""
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    objective.zero_grad(set_to_none=True)
    feats, logits = objective.teacher.forward_features(x)
    arch = SPACE.max_arch()
    objective.supernet.set_active(arch)
    q = objective.branches(objective.supernet, x, feats, arch)
    assert len(q) == 1 + len(objective.branches.points)
    branch, _ = losses.branch_terms(logits, q[1:], y, l_ce=1.0, l_kl=0.0)
    branch.backward()
    teacher = objective.teacher
    assert teacher.stem[0].weight.grad.abs().sum() > 0
    assert teacher.stages[1][0].conv1.weight.grad.abs().sum() > 0
    for unused in (teacher.head.fc.weight, teacher.stages[2][0].conv1.weight):
        assert unused.grad is None or float(unused.grad.abs().sum()) == 0.0  # KL weight 0


def test_objective_forward_and_stats(objective):
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    archs = ArchSampler(SPACE, "uniform", seed=0).sample(2)
    objective.zero_grad(set_to_none=True)
    loss, stats = objective(x, y, archs)
    assert stats.shape == (5,) and math.isclose(float(loss.detach()), float(stats[0] + stats[2]),
                                                rel_tol=1e-5)
    loss.backward()
    assert objective.branches.adapters[0].conv.weight.grad.abs().sum() > 0
    vanilla = TeacherObjective("vanilla", objective.teacher)
    loss_v, stats_v = vanilla(x, y)
    assert float(loss_v.detach()) == pytest.approx(float(stats[0]), rel=1e-5)
