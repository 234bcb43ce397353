"""GTN's family-free parts on every network family: the sampler's decisions and the student
branches (adapters into a supernet whose stage widths are elastic)."""

from __future__ import annotations

import random

import pytest
import torch

from gtn_deploy.errors import CheckpointError
from gtn_deploy.models import create_teacher
from gtn_deploy.spaces import FAMILIES, create_space
from gtn_deploy.supernet import create_supernet
from gtn_deploy.train.gtn import TeacherObjective
from gtn_deploy.train.sampler import ArchSampler, entropy_of_uniform

SPACES = {family: create_space(family, "fashion-mnist") for family in FAMILIES}


@pytest.fixture(params=sorted(FAMILIES))
def space(request):
    return SPACES[request.param]


def test_decisions_name_every_arch_exactly(space):
    rng = random.Random(0)
    names = dict(space.decision_choices())
    for _ in range(50):
        arch = space.sample(rng)
        chosen = dict(arch.decisions())
        assert all(value in names[name] for name, value in chosen.items())
        # the other slots do not matter: any filler gives back the same arch
        filler = {name: choices[-1] for name, choices in names.items()}
        assert space.arch_from_decisions({**filler, **chosen}) == arch


def test_sampler_draws_valid_archs_and_scores_them(space):
    sampler = ArchSampler(space, "uniform", seed=0)
    archs = sampler.sample(30)
    assert all(space.validate(a) for a in archs) and len(set(archs)) > 25
    # uniform: log p(a) is minus the log of the choices of the decisions that shape a
    for arch in archs[:5]:
        expected = -sum(torch.tensor(len(names)).log() for names in
                        (dict(space.decision_choices())[n] for n, _ in arch.decisions()))
        assert float(sampler.log_prob(arch).detach()) == pytest.approx(float(expected))
    assert float(sampler.entropy().detach()) == pytest.approx(entropy_of_uniform(space))


def test_learned_sampler_moves_toward_the_reward(space):
    sampler = ArchSampler(space, "learned", seed=0, lr=0.05, beta=0.0)
    depth0 = "d0" if space.family == "resnet" else "depth.0"  # each family names its own
    for _ in range(150):  # reward: a deeper first stage
        archs = sampler.sample(2)
        sampler.update(archs, [float(a.depths[0]) for a in archs])
    probs = sampler.probabilities()[depth0]
    deepest, shallowest = max(probs, key=float), min(probs, key=float)
    assert probs[deepest] > 0.6 > probs[shallowest]


def test_sampler_state_names_its_decisions(space):
    a = ArchSampler(space, "learned", seed=3)
    a.update(a.sample(2), [0.3, 0.1])
    state = a.state_dict()
    b = ArchSampler(space, "learned", seed=9)
    b.load_state_dict(state)
    assert a.sample(3) == b.sample(3)
    shuffled = {**state, "decisions": list(reversed(state["decisions"]))}
    with pytest.raises(CheckpointError, match="orders its decisions differently"):
        b.load_state_dict(shuffled)


def test_branches_follow_the_active_widths(space):
    """Every branch runs for the smallest and the largest arch; an adapter is built for the
    widest input and an arch trains only the channels it uses."""
    torch.manual_seed(0)
    supernet = create_supernet(space)
    objective = TeacherObjective("gtn", create_teacher("resnet20", space.task), supernet, 28)
    assert objective.branches.num_branches >= 2
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    for arch in (space.min_arch(), space.max_arch()):
        objective.zero_grad(set_to_none=True)
        loss, stats = objective(x, y, [arch])
        loss.backward()
        assert torch.isfinite(loss) and len(stats) == 4
        for adapter, (_, j) in zip(objective.branches.adapters, objective.branches.points):
            used = supernet.stage_in_channels(j)  # the arch is still active
            per_channel = adapter.conv.weight.grad.abs().sum((1, 2, 3))
            assert adapter.conv.out_channels == supernet.max_stage_in_channels(j)
            assert (per_channel[:used] > 0).all() and (per_channel[used:] == 0).all()
    if space.family == "resnet":  # its widths are elastic: the min arch uses fewer channels
        supernet.set_active(space.min_arch())
        assert any(supernet.stage_in_channels(j) < supernet.max_stage_in_channels(j)
                   for _, j in objective.branches.points)
