"""Measure subnets of a space with onnxruntime: whole-network latency and per-block times.

Used by calibration and ``benchmarks/latency_model.py``. Subnets are built and exported with
torch (imported lazily, so the bundle bench path never sees it). Latency is measured
interleaved: every round runs each model in turn, so slow drifts of a shared machine hit all
models alike; a model's latency is the median over all its rounds.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Sequence

import numpy as np

from gtn_deploy.arch import ArchConfig, SearchSpace
from gtn_deploy.bench.runners import ort_runner
from gtn_deploy.cost.analytic import network_cost

# TorchScript-exporter node names carry the module path: "/stages.1/blocks.0/expand/conv/Conv".
_BLOCK_RE = re.compile(r"^/?(stem|first|head|stages\.(\d+)/blocks\.(\d+))(/|_|$)")


@dataclass
class SubnetTiming:
    """One subnet's measured latency (ms) and in-context block times (us)."""

    arch: ArchConfig
    latency_ms: float
    round_medians_ms: list[float]
    block_us: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "latency_ms": self.latency_ms,
                "round_medians_ms": self.round_medians_ms, "block_us": self.block_us}


def spanning_archs(space: SearchSpace, n: int, rng: random.Random,
                   resolutions: Sequence[int] | None = None) -> list[ArchConfig]:
    """``n`` distinct subnets spread over the space's FLOPs range: its min and max plus
    random draws picked at evenly spaced FLOPs quantiles of a larger pool."""
    def draw() -> ArchConfig:
        arch = space.sample(rng)
        if resolutions:
            arch = ArchConfig(arch.depths, arch.kernel_sizes, arch.expand_ratios,
                              rng.choice(list(resolutions)), arch.width_mult)
        return arch

    pool = {draw() for _ in range(max(20 * n, 200))}
    ends = [space.min_arch(), space.max_arch()]
    if resolutions:
        ends = [ArchConfig(a.depths, a.kernel_sizes, a.expand_ratios, r, a.width_mult)
                for a, r in zip(ends, (min(resolutions), max(resolutions)))]
    ranked = sorted(pool - set(ends), key=lambda a: (network_cost(space, a).flops, a.to_json()))
    k = max(0, n - len(ends))
    picks = [ranked[round(i * (len(ranked) - 1) / max(1, k - 1))] for i in range(k)]
    return list(dict.fromkeys(ends[:n] + picks))


def random_archs(space: SearchSpace, n: int, rng: random.Random, exclude=(),
                 resolutions: Sequence[int] | None = None) -> list[ArchConfig]:
    """``n`` distinct uniformly random subnets not in ``exclude`` (held-out sets)."""
    seen, out = set(exclude), []
    while len(out) < n:
        arch = space.sample(rng)
        if resolutions:
            arch = ArchConfig(arch.depths, arch.kernel_sizes, arch.expand_ratios,
                              rng.choice(list(resolutions)), arch.width_mult)
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out


def export_subnet(space: SearchSpace, arch: ArchConfig, path: Path, seed: int = 0) -> Path:
    """A randomly initialised static student of ``arch`` as ONNX (random weights time the
    same as trained ones: dense kernels do not skip zeros)."""
    import torch

    from gtn_deploy.export.onnx import InputSpec, export_onnx
    from gtn_deploy.supernet.layers import build_student

    torch.manual_seed(seed)
    net = build_student(space, arch).eval()
    spec = InputSpec(space.task.in_channels, arch.resolution, arch.resolution)
    export_onnx(net, spec, path, simplify=False)
    return path


def export_all(space: SearchSpace, archs: Sequence[ArchConfig], folder: Path) -> list[Path]:
    return [export_subnet(space, a, folder / f"subnet_{i:03d}.onnx", seed=i)
            for i, a in enumerate(archs)]


def _input(arch: ArchConfig, space: SearchSpace) -> np.ndarray:
    shape = (1, space.task.in_channels, arch.resolution, arch.resolution)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def measure_interleaved(space: SearchSpace, archs: Sequence[ArchConfig],
                        paths: Sequence[Path], threads: int = 1, rounds: int = 5,
                        iters: int = 40, warmup: int = 5) -> list[SubnetTiming]:
    """Median latency per model over ``rounds`` x ``iters`` runs, models interleaved."""
    runners = [ort_runner(p, threads, "fp32") for p in paths]
    inputs = [_input(a, space) for a in archs]
    samples: list[list[list[float]]] = [[] for _ in runners]
    clock = time.perf_counter
    for _ in range(rounds):
        for runner, x, out in zip(runners, inputs, samples):
            for _ in range(warmup):
                runner.run(x)
            times = []
            for _ in range(iters):
                t0 = clock()
                runner.run(x)
                times.append((clock() - t0) * 1e3)
            out.append(times)
    return [SubnetTiming(a, float(median([t for r in s for t in r])),
                         [float(median(r)) for r in s]) for a, s in zip(archs, samples)]


def block_of(node_name: str) -> str | None:
    """The block (``stem``, ``first``, ``s1.b0``, ``head``) an ONNX node belongs to."""
    m = _BLOCK_RE.match(node_name)
    if not m:
        return None
    return f"s{m.group(2)}.b{m.group(3)}" if m.group(2) is not None else m.group(1)


def _trimmed_mean(values: Sequence[float], cut: float = 0.2) -> float:
    """Mean of the middle values: robust to preemption spikes, finer than the profiler's
    whole-microsecond median."""
    s = sorted(values)
    k = int(len(s) * cut)
    middle = s[k:len(s) - k] or s
    return float(sum(middle) / len(middle))


def profile_blocks(path: Path, space: SearchSpace, arch: ArchConfig, threads: int = 1,
                   runs: int = 30) -> dict[str, float]:
    """In-context time per block (us) from onnxruntime's node profiler (the warm-up runs
    dropped). Nodes the optimiser added (layout reorders) count for the block that ran just
    before them."""
    with tempfile.TemporaryDirectory(prefix="gtnd-prof-") as tmp:
        runner = ort_runner(path, threads, "fp32", profile_prefix=os.path.join(tmp, "p"))
        x = _input(arch, space)
        for _ in range(5 + runs):
            runner.run(x)
        events = json.loads(Path(runner.info["session"].end_profiling()).read_text())
    per_node: dict[str, list[float]] = {}
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_node.setdefault(ev["name"].removesuffix("_kernel_time"), []).append(ev["dur"])
    blocks: dict[str, float] = {}
    current = "stem"
    for name, durs in per_node.items():  # insertion order = execution order of the first run
        current = block_of(name) or current
        blocks[current] = blocks.get(current, 0.0) + _trimmed_mean(durs[5:] or durs)
    return blocks


def measure_subnets(space: SearchSpace, archs: Sequence[ArchConfig], threads: int = 1,
                    rounds: int = 5, iters: int = 40, profile_runs: int = 30,
                    workdir: str | Path | None = None) -> tuple[list[SubnetTiming], float]:
    """Export, time and profile ``archs``; return the timings and the seconds it took."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gtnd-calib-", dir=workdir) as tmp:
        paths = export_all(space, archs, Path(tmp))
        timings = measure_interleaved(space, archs, paths, threads, rounds, iters)
        if profile_runs:
            for t, p in zip(timings, paths):
                t.block_us = profile_blocks(p, space, t.arch, threads, profile_runs)
    return timings, time.perf_counter() - start
