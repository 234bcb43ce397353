"""Measure subnets of a space: whole-network latency (onnxruntime by default, or the runner
calibration chose: ``bench.calibration_runtime``) and per-block times (onnxruntime CPU).

Used by calibration and ``benchmarks/latency_model.py``. Subnets are built and exported with
torch (imported lazily, so the bundle bench path never sees it). Latency follows the
protocol of ``gtn_deploy.rounds``: interleaved rounds in a shuffled order, p10 of the
calls, more rounds until that figure reproduces; the node profiler runs interleaved too.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import time
import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Callable, Sequence

import numpy as np

from gtn_deploy.cost.analytic import network_cost
from gtn_deploy.rounds import RoundPlan, RoundsResult, round_timer, run_rounds
from gtn_deploy.runtimes import RUNTIMES, Runner
from gtn_deploy.runtimes.onnxruntime import node_events
from gtn_deploy.spaces.base import Arch, Space

MakeRunner = Callable[[Path, tuple], Runner]  # (ONNX path, input shape) -> a built runner
SUBNET_OPSET = 17  # export.onnx.DEFAULT_OPSET (a test keeps them equal)
ORT = RUNTIMES["onnxruntime"]

# TorchScript-exporter node names carry the module path: "/stages.1/blocks.0/expand/conv/Conv".
_BLOCK_RE = re.compile(r"^/?(stem|first|head|stages\.(\d+)/blocks\.(\d+))(/|_|$)")


@dataclass
class SubnetTiming:
    """One subnet's measured latency (ms, the protocol's p10), how well it reproduced
    (``spread``: first half of the rounds against the second) and in-context block times."""

    arch: Arch
    latency_ms: float
    round_medians_ms: list[float]
    block_us: dict[str, float] = field(default_factory=dict)
    spread: float = float("nan")

    def to_dict(self) -> dict:
        return {"arch": self.arch.to_dict(), "latency_ms": self.latency_ms,
                "spread": self.spread, "round_medians_ms": self.round_medians_ms,
                "block_us": self.block_us}


def spanning_archs(space: Space, n: int, rng: random.Random,
                   resolutions: Sequence[int] | None = None) -> list[Arch]:
    """``n`` distinct subnets spread over the space's FLOPs range: its min and max plus
    random draws picked at evenly spaced FLOPs quantiles of a larger pool."""
    def draw() -> Arch:
        arch = space.sample(rng)
        if resolutions:
            arch = dataclasses.replace(arch, resolution=rng.choice(list(resolutions)))
        return arch

    pool = {draw() for _ in range(max(20 * n, 200))}
    ends = [space.min_arch(), space.max_arch()]
    if resolutions:
        ends = [dataclasses.replace(a, resolution=r)
                for a, r in zip(ends, (min(resolutions), max(resolutions)))]
    ranked = sorted(pool - set(ends), key=lambda a: (network_cost(space, a).flops, a.to_json()))
    k = max(0, n - len(ends))
    picks = [ranked[round(i * (len(ranked) - 1) / max(1, k - 1))] for i in range(k)]
    return list(dict.fromkeys(ends[:n] + picks))


def random_archs(space: Space, n: int, rng: random.Random, exclude=(),
                 resolutions: Sequence[int] | None = None) -> list[Arch]:
    """``n`` distinct uniformly random subnets not in ``exclude`` (held-out sets)."""
    seen, out = set(exclude), []
    while len(out) < n:
        arch = space.sample(rng)
        if resolutions:
            arch = dataclasses.replace(arch, resolution=rng.choice(list(resolutions)))
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out


def export_subnet(space: Space, arch: Arch, path: Path, seed: int = 0) -> Path:
    """A randomly initialised static student of ``arch`` as ONNX (random weights time the
    same as trained ones: dense kernels do not skip zeros).

    Exported as ``export.onnx.export_onnx`` exports a bundle's model (the TorchScript
    exporter, opset ``SUBNET_OPSET``, constant folding, input ``input``, output ``logits``;
    a test keeps the two graphs equal) but here, without the checker: bench does not import
    export, and a timing model needs no gate. The exporter's node names carry the module
    path that ``block_of`` reads."""
    import torch

    # lazy: keeps torch out of a light module
    from gtn_deploy.supernet import build_student  # by the space's family

    torch.manual_seed(seed)
    net = build_student(space, arch).eval()
    dummy = torch.zeros((1, space.task.in_channels, arch.resolution, arch.resolution))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as export_onnx: a busy host's other cores stay free
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation warning
            torch.onnx.export(net, (dummy,), str(path), dynamo=False,
                              opset_version=SUBNET_OPSET, input_names=["input"],
                              output_names=["logits"], do_constant_folding=True)
    finally:
        torch.set_num_threads(threads)
    return path


def export_all(space: Space, archs: Sequence[Arch], folder: Path) -> list[Path]:
    return [export_subnet(space, a, folder / f"subnet_{i:03d}.onnx", seed=i)
            for i, a in enumerate(archs)]


def _input(arch: Arch, space: Space) -> np.ndarray:
    shape = (1, space.task.in_channels, arch.resolution, arch.resolution)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def measure_interleaved(space: Space, archs: Sequence[Arch],
                        paths: Sequence[Path], threads: int = 1, plan: RoundPlan = RoundPlan(),
                        rng: random.Random | None = None, make_runner: MakeRunner | None = None,
                        on_round: Callable[[int], None] | None = None
                        ) -> tuple[list[SubnetTiming], RoundsResult]:
    """Latency of each model by the ``gtn_deploy.rounds`` protocol (interleaved, shuffled, p10,
    adaptive); also returns the raw rounds. ``make_runner(path, input_shape)`` builds each
    model's runner (default: onnxruntime's CPU provider, fp32, ``threads`` threads);
    ``on_round(i)`` runs after each round of model i (progress)."""
    make = make_runner or (lambda path, shape: ORT.session(path, threads, "fp32"))
    inputs = [_input(a, space) for a in archs]
    runners = []
    try:  # engines hold GPU memory: released even when a later build fails
        for path, x in zip(paths, inputs):
            runners.append(make(path, x.shape))
        timers = [round_timer(lambda r=r, x=x: r.run(x), plan.warmup, plan.iters)
                  for r, x in zip(runners, inputs)]

        def time_round(i: int) -> list[float]:
            times = timers[i]()
            if on_round is not None:
                on_round(i)
            return times

        res = run_rounds(time_round, len(archs), plan, rng or random.Random(0))
    finally:
        for runner in runners:
            runner.close()
    timings = [SubnetTiming(a, res.latency_ms(i), [float(median(r)) for r in res.rounds[i]],
                            spread=res.spread(i)) for i, a in enumerate(archs)]
    return timings, res


def block_of(node_name: str) -> str | None:
    """The block (``stem``, ``first``, ``s1.b0``, ``head``) an ONNX node belongs to."""
    m = _BLOCK_RE.match(node_name)
    if not m:
        return None
    return f"s{m.group(2)}.b{m.group(3)}" if m.group(2) is not None else m.group(1)


def _low_mean(values: Sequence[float], share: float = 0.5) -> float:
    """Mean of the fastest ``share`` of the values: interference only adds time (as p10 of
    the whole-network calls), and a mean stays finer than the profiler's whole microseconds."""
    s = sorted(values)
    low = s[:max(1, round(len(s) * share))]
    return float(sum(low) / len(low))


def _block_times(events: list[dict], warmup: int, period: int) -> dict[str, float]:
    """Per block, the sum of its nodes' times; in each ``period`` runs the first ``warmup``
    are dropped. Nodes the optimiser added (layout reorders) count for the block that ran
    just before them."""
    per_node: dict[str, list[float]] = {}
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_node.setdefault(ev["name"].removesuffix("_kernel_time"), []).append(ev["dur"])
    blocks: dict[str, float] = {}
    current = "stem"
    for name, durs in per_node.items():  # insertion order = execution order of the first run
        current = block_of(name) or current
        kept = [d for k, d in enumerate(durs) if k % period >= warmup] or durs
        blocks[current] = blocks.get(current, 0.0) + _low_mean(kept)
    return blocks


def profile_interleaved(space: Space, archs: Sequence[Arch],
                        paths: Sequence[Path], threads: int = 1, runs: int = 30,
                        rng: random.Random | None = None, per_round: int = 3,
                        warmup: int = 2) -> list[dict[str, float]]:
    """In-context time per block (us) of each model from onnxruntime's node profiler, the
    models run in interleaved rounds in a shuffled order as their latency is measured."""
    rng = rng or random.Random(0)
    with tempfile.TemporaryDirectory(prefix="gtnd-prof-") as tmp:
        runners = [ORT.session(p, threads, "fp32", profile_prefix=os.path.join(tmp, f"p{i}"))
                   for i, p in enumerate(paths)]
        inputs = [_input(a, space) for a in archs]
        order = list(range(len(runners)))
        for _ in range(-(-runs // per_round)):
            rng.shuffle(order)
            for i in order:
                for _ in range(warmup + per_round):
                    runners[i].run(inputs[i])
        return [_block_times(node_events(r), warmup, warmup + per_round) for r in runners]


def measure_subnets(space: Space, archs: Sequence[Arch], threads: int = 1,
                    plan: RoundPlan = RoundPlan(), profile_runs: int = 30,
                    profiled: int | None = None, seed: int = 0,
                    workdir: str | Path | None = None, make_runner: MakeRunner | None = None,
                    on_round: Callable[[int], None] | None = None
                    ) -> tuple[list[SubnetTiming], dict]:
    """Export, time and profile ``archs`` (the first ``profiled`` of them; default all) in one
    rotation; return the timings and how the measurement went (seconds, rounds, stop).
    ``make_runner``, ``on_round``: as in :func:`measure_interleaved`; ``profile_runs=0``
    skips the node profiler (onnxruntime CPU only)."""
    start = time.perf_counter()
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="gtnd-calib-", dir=workdir) as tmp:
        paths = export_all(space, archs, Path(tmp))
        export_s = time.perf_counter() - start
        timings, res = measure_interleaved(space, archs, paths, threads, plan, rng,
                                           make_runner, on_round)
        n = len(archs) if profiled is None else profiled
        if profile_runs and n:
            for t, blocks in zip(timings, profile_interleaved(space, archs[:n], paths[:n],
                                                              threads, profile_runs, rng)):
                t.block_us = blocks
    return timings, {"seconds": time.perf_counter() - start, "export_s": export_s,
                     "timing_s": res.seconds, "rounds_max": max(len(r) for r in res.rounds),
                     "rounds_min": min(len(r) for r in res.rounds), "stop": res.stop,
                     "plan": dataclasses.asdict(plan)}
