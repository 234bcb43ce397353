"""The analytic cost model (gtn_deploy.cost.analytic) against the real modules: parameters
exact (in total and per named layer), FLOPs within 2% of torch's own counter."""

from __future__ import annotations

import dataclasses
import random

import torch
from torch.utils.flop_counter import FlopCounterMode

from gtn_deploy.spaces.mbconv import SPACES
from gtn_deploy.cost.analytic import network_cost
from gtn_deploy.supernet import build_student




def _archs():
    for i, (task, space) in enumerate(SPACES.items()):
        rng = random.Random(100 + i)
        archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(3)]
        if task == "imagenet":  # the resolution is elastic here; 224 only for the min arch
            archs = [dataclasses.replace(a, resolution=r)
                     for a, r in zip(archs, (128, 224, 132, 160, 192))]
        yield from ((space, a) for a in archs)


def test_params_and_flops_agree_with_modules():
    checked = 0
    for space, arch in _archs():
        student = build_student(space, arch).eval()
        cost = network_cost(space, arch)
        assert cost.params == sum(p.numel() for p in student.parameters()), arch.summary()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            student(torch.zeros(1, space.task.in_channels, arch.resolution, arch.resolution))
        measured = counter.get_total_flops()
        assert abs(cost.flops - measured) <= 0.02 * measured, \
            f"{space.name} {arch.summary()}: cost model {cost.flops}, torch {measured}"
        checked += 1
    assert checked == 5 * len(SPACES)
