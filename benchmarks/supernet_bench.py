"""Supernet benchmark on this CPU.

1. Training step (forward + backward + SGD step) of the supernet with an active arch vs the
   extracted static student of the same arch, same batch: the ratio (goal <= 1.3).
2. Parameters, MFLOPs (analytic cost model) and measured forward time (batch 1, median
   after warm-up) of max_arch, min_arch and a few random archs per task.

    .venv/bin/python benchmarks/supernet_bench.py [--quick] [--threads 1]

Writes benchmarks/results/supernet_bench.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import conditions  # noqa: E402
from gtn_deploy.spaces.mbconv import SPACES, ArchConfig, SearchSpace  # noqa: E402
from gtn_deploy.cost.analytic import network_cost  # noqa: E402
from gtn_deploy.io_utils import atomic_write_json  # noqa: E402
from gtn_deploy.stats import percentile  # noqa: E402
from gtn_deploy.supernet import Supernet  # noqa: E402


def _timed(fn, warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x, y):
    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def bench_train_step(space: SearchSpace, arch: ArchConfig, batch_size: int, steps: int) -> dict:
    """Median step times of both networks. Steps alternate one by one, so load from other
    processes on this shared CPU hits both alike; ``ratio`` is the median per-pair ratio."""
    torch.manual_seed(0)
    supernet = Supernet(space).train()
    supernet.set_active(arch)
    static = supernet.extract(arch).train()
    x = torch.randn(batch_size, space.task.in_channels, arch.resolution, arch.resolution)
    y = torch.randint(0, space.task.num_classes, (batch_size,))
    fns = {}
    for name, model in (("supernet", supernet), ("static", static)):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        fns[name] = _train_step(model, opt, x, y)
        _timed(fns[name], warmup=2, iters=0)
    times: dict[str, list[float]] = {"supernet": [], "static": []}
    for _ in range(steps):
        for name, fn in fns.items():
            times[name] += _timed(fn, warmup=0, iters=1)
    sup, sta = statistics.median(times["supernet"]), statistics.median(times["static"])
    pairs = [a / b for a, b in zip(times["supernet"], times["static"])]
    return {"task": space.name, "arch": arch.summary(), "batch_size": batch_size,
            "supernet_step_ms": round(sup, 2), "static_step_ms": round(sta, 2),
            "ratio": round(statistics.median(pairs), 3), "ratio_of_medians": round(sup / sta, 3),
            "steps_timed": steps}


def bench_forward(supernet: Supernet, arch: ArchConfig, label: str, iters: int) -> dict:
    space = supernet.space
    student = supernet.extract(arch).eval()
    cost = network_cost(space, arch)
    x = torch.randn(1, space.task.in_channels, arch.resolution, arch.resolution)
    with torch.no_grad():
        times = _timed(lambda: student(x), warmup=5, iters=iters)
    measured_params = sum(p.numel() for p in student.parameters())
    assert measured_params == cost.params, (label, measured_params, cost.params)
    return {"task": space.name, "which": label, "arch": arch.summary(), "params": cost.params,
            "mflops": round(cost.mflops, 2), "forward_ms_p50": round(statistics.median(times), 3),
            "forward_ms_p90": round(percentile(sorted(times), 90), 3),
            "runs": iters}


def _archs(space: SearchSpace, n_random: int, seed: int) -> list[tuple[str, ArchConfig]]:
    rng = random.Random(seed)
    out = [("max", space.max_arch()), ("min", space.min_arch())]
    out += [(f"random{i}", space.sample(rng)) for i in range(n_random)]
    return out


def _conditions(threads: int, quick: bool) -> dict:
    # The CPU is shared: the load average says how much the timings can be trusted.
    return {**conditions(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "torch": torch.__version__, "threads": threads, "quick": quick}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare pipe would split the Markdown table cell


def _markdown(train: list[dict], forward: list[dict]) -> str:
    lines = ["| task | arch | batch | supernet step ms | static step ms | ratio (paired) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | `{_cell(r['arch'])}` | {r['batch_size']} "
              f"| {r['supernet_step_ms']} | {r['static_step_ms']} | {r['ratio']} |"
              for r in train]
    lines += ["", "| task | which | arch | params | MFLOPs | fwd ms p50 (bs 1) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['which']} | `{_cell(r['arch'])}` | {r['params']:,} "
              f"| {r['mflops']} | {r['forward_ms_p50']} |" for r in forward]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, archs and runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "supernet_bench.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quick = args.quick
    train_tasks = ("fashion-mnist", "cifar10") if quick else ("fashion-mnist", "cifar10",
                                                                "imagenet")
    train = []
    for task in train_tasks:
        space = SPACES[task]
        arch = space.sample(random.Random(7))
        if task == "imagenet":
            arch = dataclasses.replace(arch, resolution=128)
        batch = {"fashion-mnist": 64, "cifar10": 32, "imagenet": 8}[task]
        for a in (arch, space.max_arch()) if not quick else (arch,):
            train.append(bench_train_step(space, a, batch, steps=12 if quick else 40))
    forward = []
    for i, task in enumerate(("fashion-mnist", "cifar10", "cifar100", "imagenet")):
        supernet = Supernet(SPACES[task])
        for label, arch in _archs(SPACES[task], 1 if quick else 3, seed=10 + i):
            forward.append(bench_forward(supernet, arch, label, iters=20 if quick else 100))
    result = {"schema_version": 1, "benchmark": "supernet_bench",
              "conditions": _conditions(args.threads, quick),
              "train_step": train, "forward": forward}
    atomic_write_json(args.out, result)
    print(_markdown(train, forward))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
