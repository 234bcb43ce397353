"""The elastic ResNet family (gtn_deploy.spaces.resnet, gtn_deploy.supernet.resnet): arch
JSON and validation, sampling, the stage-wise API and tier-0 latency. What every family
promises (extraction parity, exact params, FLOPs against torch's counter, ONNX parity) is
tests/test_family_contract.py, run over each family. Tiny inputs, batch 2, one thread."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch

from gtn_deploy.cost.latency import Tier0, predict_memory_mb
from gtn_deploy.cost.roofline import roofline
from gtn_deploy.errors import ArchError, UsageError
from gtn_deploy.profiles import load_profile
from gtn_deploy.spaces.resnet import (RESNET_SPACES, ResNetArch, ResNetStage, block_keys,
                                      network_blocks, network_cost, resnet_space)
from gtn_deploy.supernet.resnet import build_student
from family_helpers import archs, image, supernet

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # exporter internals

FMNIST = resnet_space("fashion-mnist")


# -- arch and space (no torch) --------------------------------------------------------------

@pytest.mark.parametrize("task", sorted(RESNET_SPACES))
def test_json_round_trip_and_membership(task):
    space = resnet_space(task)
    rng = random.Random(1)
    for _ in range(50):
        arch = space.sample(rng)
        assert space.validate(arch) is arch
        again = ResNetArch.from_json(arch.to_json())
        assert again == arch and hash(again) == hash(arch)
        assert space.arch_from_dict(arch.to_dict()) == arch
    assert space.to_dict()["family"] == "resnet"


def test_bad_dicts_name_the_key():
    good = FMNIST.max_arch().to_dict()
    cases = [
        ({k: v for k, v in good.items() if k != "width_mults"}, "missing \\['width_mults'\\]"),
        ({**good, "kernel_sizes": [3]}, "unknown keys \\['kernel_sizes'\\]"),
        ({**good, "family": "mbconv"}, "family 'mbconv'"),
        ({**good, "expand_ratios": "0.2"}, "'expand_ratios' must be a list"),
        ({**good, "depths": [1, "x", 2, 1]}, "'depths' must be a list"),
        ({**good, "resolution": None}, "'resolution' must be a number"),
    ]
    for bad, msg in cases:
        with pytest.raises(ArchError, match=msg) as info:
            ResNetArch.from_dict(bad, where="plan.json")
        assert str(info.value).startswith("plan.json: ") and "\n" not in str(info.value)
    with pytest.raises(ArchError, match="not valid JSON"):
        ResNetArch.from_json("{nope")
    with pytest.raises(UsageError, match="no resnet space for task 'mnist'"):
        resnet_space("mnist")


def _with(**changes) -> ResNetArch:
    return dataclasses.replace(FMNIST.min_arch(), **changes)


@pytest.mark.parametrize("arch, msg", [
    (_with(depths=(1, 1, 2)), "3 depths"),
    (_with(depths=(1, 1, 5, 1), expand_ratios=(0.2,) * 8), "stage 2 depth 5"),
    (_with(width_mults=(0.65, 0.5, 0.65, 0.65)), "stage 1 width multiplier 0.5"),
    (_with(expand_ratios=(0.2,) * 4), "depths sum to 5 blocks"),
    (_with(expand_ratios=(0.2, 0.2, 0.3, 0.2, 0.2)), "expand ratio 0.3"),
    (_with(resolution=32), "resolution 32"),
])
def test_validate_names_the_problem(arch, msg):
    with pytest.raises(ArchError, match=msg):
        FMNIST.validate(arch)


def test_validate_rejects_another_family():
    from gtn_deploy.spaces.mbconv import get_space

    with pytest.raises(ArchError, match="ArchConfig, not a ResNetArch"):
        FMNIST.validate(get_space("fashion-mnist").max_arch())


def test_sample_mutate_crossover_stay_in_space():
    space = resnet_space("cifar100")
    assert space.sample(random.Random(7)) == space.sample(random.Random(7))
    rng = random.Random(3)
    a, b = space.sample(rng), space.sample(rng)
    assert space.mutate(a, rng, 0.0) == a and space.crossover(a, a, rng) == a
    seen = set()
    for _ in range(50):
        m = space.validate(space.mutate(a, rng, 0.5))
        c = space.validate(space.crossover(a, b, rng))
        seen |= {m, c}
        assert set(c.width_mults) <= set(a.width_mults) | set(b.width_mults)
    assert len(seen) > 20


def test_size_counts_distinct_archs_and_decisions_match_choices():
    tiny = dataclasses.replace(FMNIST, stages=(ResNetStage(32, 1, 1),), depth_deltas=(0, 1),
                               expand_choices=(0.2, 0.35), width_choices=(0.8, 1.0))
    rng = random.Random(0)
    assert len({tiny.sample(rng) for _ in range(400)}) == tiny.size() == 2 * (2 + 4)
    choices = dict(FMNIST.decision_choices())
    for arch in archs(FMNIST, 5, n=3):
        decisions = arch.decisions()
        assert decisions[0] == ("d0", arch.depths[0]) and decisions[-1] == ("r", 28)
        assert len(decisions) == 2 * FMNIST.num_stages + sum(arch.depths) + 1
        for name, value in decisions:
            assert value in choices[name], name
    assert FMNIST.min_arch().summary() == "r28 d1-1-2-1 w65-65-65-65 e20|20|20,20|20"


def test_space_numbers_and_block_keys():
    small, big = network_cost(FMNIST, FMNIST.min_arch()), network_cost(FMNIST, FMNIST.max_arch())
    assert 20_000 < small.params < 100_000 and 500_000 < big.params < 1_500_000
    assert small.flops < big.flops and small.peak_activation_elems <= big.peak_activation_elems
    for block in big.blocks:
        assert block.peak_activation_elems >= max(x.in_elems + x.out_elems for x in block.layers)
    names = [b.name for b in network_blocks(FMNIST, FMNIST.min_arch())]
    assert names == ["stem", "s0.b0", "s1.b0", "s2.b0", "s2.b1", "s3.b0", "head"]
    keys = dict(block_keys(FMNIST, FMNIST.max_arch()))
    assert keys["s2.b0"].startswith("resnet-bottleneck-in:14x14x64-out:7x7x128-mid:48")
    # the blocks after a stage's second have its second's shapes, so its key (as in OFA)
    assert len(set(keys.values())) == 2 + sum(min(d, 2) for d in FMNIST.max_arch().depths)


# -- torch: students, supernet, cost against modules -------------------------------------------

def test_stagewise_forward_and_training_step():
    net = supernet("resnet", "fashion-mnist")
    arch = FMNIST.sample(random.Random(4))
    net.set_active(arch)
    x = image(FMNIST, arch)
    with torch.no_grad():
        feats, logits = net.forward_features(x)
        h = net.forward_from(net.stem_forward(x), 0)
    assert torch.allclose(h, logits)
    widths = FMNIST.stage_widths(arch)
    assert [f.shape[1] for f in feats] == list(widths)
    assert [f.shape[-1] for f in feats] == [28, 14, 7, 4]  # 'same' padding rounds 7/2 up
    assert [net.stage_in_stride(i) for i in range(4)] == [1, 1, 2, 4]
    assert net.stage_in_channels(2) == widths[1]
    student = build_student(FMNIST, arch).train()
    student(x).sum().backward()  # a fresh student trains (BN in batch mode)
    assert all(p.grad is not None for p in student.parameters())


def test_tier0_latency_is_finite_and_grows_with_the_arch():
    model = roofline(load_profile("jetson-orin-nano"), "fp32", 1)
    tier0 = Tier0(FMNIST, model)  # given the cost, tier 0 never asks the MBConv cost model
    archs = [FMNIST.min_arch(), FMNIST.sample(random.Random(2)), FMNIST.max_arch()]
    costs = [network_cost(FMNIST, a) for a in archs]
    ms = [tier0.latency_ms(a, c) for a, c in zip(archs, costs)]
    assert all(math.isfinite(v) and v > 0 for v in ms) and ms[0] < ms[2]
    assert ms[0] <= ms[1] <= ms[2]
    memory = [predict_memory_mb(FMNIST, a, cost=c) for a, c in zip(archs, costs)]
    assert 0 < memory[0] < memory[2]
