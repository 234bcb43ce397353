"""Evaluate sampled subnets of a GTN-trained supernet: the accuracy predictor's data.

Each subnet: BN statistics recalibrated on a few training batches (no augmentation), then
top-1 on the held-out validation split (never trained on by the teacher run).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gtn_deploy.data import TaskData, load_space_data
from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.train.distributed import DistInfo
from gtn_deploy.train.evaluate import evaluate_subnet
from gtn_deploy.train.kd_teacher import open_teacher


def sample_distinct(space: Space, n: int, seed: int) -> list[Arch]:
    """``n`` distinct architectures, seeded; the largest and smallest first (range anchors)."""
    rng, seen = random.Random(seed), [space.max_arch(), space.min_arch()]
    out = list(dict.fromkeys(seen))[:n]
    tries = 0
    while len(out) < n and tries < 100 * n:
        arch = space.sample(rng)
        tries += 1
        if arch not in out:
            out.append(arch)
    return out


def evaluate_supernet_subnets(teacher_dir: str | Path, samples: int, seed: int = 0,
                              calib_images: int = 500, limit_val: int | None = None,
                              data_dir: str | None = None, data: TaskData | None = None,
                              device: str = "cpu",
                              on_result: Callable[[int, dict], None] | None = None
                              ) -> tuple[Any, list[dict]]:
    """(space, [{arch, top1, loss}...]) for ``samples`` subnets of the teacher's supernet."""
    source = open_teacher(teacher_dir)
    supernet = source.load_supernet().to(device)
    space = supernet.space
    if data is None:
        data = load_space_data(space, data_dir, limit_val=limit_val)
    info = DistInfo(device=device)
    results = []
    for i, arch in enumerate(sample_distinct(space, samples, seed)):
        t0 = time.perf_counter()
        stats = evaluate_subnet(supernet, arch, data.train, data.val, space.task, info,
                                calib_images=calib_images)
        row = {"arch": arch.to_dict(), "summary": arch.summary(), "top1": stats["top1"],
               "loss": stats["loss"], "time_s": round(time.perf_counter() - t0, 3)}
        results.append(row)
        if on_result:
            on_result(i, row)
    return space, results
