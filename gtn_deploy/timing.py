"""Timing harness: first inference, warm-up, then a fixed count or a fixed duration.

The timed calls are also read as consecutive *rounds* (``rounds`` slices of the run), each
with its own p90: on a shared machine load comes in phases lasting seconds, and one 200-call
window of the same bundle here gave a p90 of 0.62 ms in one run and 0.39 ms in the next. A
budget verdict whose rounds disagree is reported as unsettled instead of flipping silently
(``bench.run.budget_verdict``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

from gtn_deploy.errors import UsageError
from gtn_deploy.stats import percentile


@dataclass(frozen=True)
class TimingStats:
    """Latency distribution of one measured loop, in ms (throughput in images/s)."""

    iters: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float
    first_ms: float | None
    warmup: int
    total_s: float
    round_p90_ms: tuple[float, ...] = ()  # the p90 of each consecutive round; () for one

    def to_dict(self) -> dict:
        doc = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        doc["round_p90_ms"] = [round(v, 5) for v in self.round_p90_ms]
        return doc


def summarize(samples_ms: list[float], batch_size: int = 1, first_ms: float | None = None,
              warmup: int = 0, rounds: int = 1) -> TimingStats:
    """Percentiles, moments and throughput of per-call latencies (in call order); with
    ``rounds`` > 1 also the p90 of each of that many consecutive, equal slices."""
    s = sorted(samples_ms)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else 0.0
    return TimingStats(n, percentile(s, 50), percentile(s, 90), percentile(s, 95),
                       percentile(s, 99), mean, std,
                       s[0], s[-1], batch_size * 1e3 / mean if mean > 0 else math.inf,
                       first_ms, warmup, sum(s) / 1e3, _round_p90s(samples_ms, rounds))


def _round_p90s(samples_ms: list[float], rounds: int) -> tuple[float, ...]:
    if rounds < 2:
        return ()
    bounds = [len(samples_ms) * r // rounds for r in range(rounds + 1)]
    return tuple(percentile(sorted(samples_ms[a:b]), 90) for a, b in zip(bounds, bounds[1:]))


def check_loop(warmup: int, iters: int | None, seconds: float | None,
               rounds: int = 1) -> None:
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    if iters is not None and seconds is not None:
        raise UsageError("give --iters or --seconds, not both")
    if iters is not None and iters < 1:
        raise UsageError(f"--iters must be >= 1, got {iters}")
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"--seconds must be > 0 and finite, got {seconds}")
    if rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {rounds}")
    if rounds > 1 and iters is not None and iters < MIN_CALLS_PER_ROUND * rounds:
        raise UsageError(f"--iters {iters} is too few for {rounds} rounds: give at least "
                         f"{MIN_CALLS_PER_ROUND} calls per round (--iters "
                         f"{MIN_CALLS_PER_ROUND * rounds}) or fewer --rounds")


# Without --iters or --seconds a run lasts a few seconds and at least MIN_ITERS calls, as
# trtexec and benchmark_app do: 100 calls of a 0.2 ms model is 20 ms, too short to trust.
DEFAULT_SECONDS = 3.0
MIN_ITERS = 100
# p99 / p50 above this: the tail is interference (other load, throttling), not the model
NOISY_TAIL_RATIO = 2.0
# a round's p90 from fewer calls than this is too coarse to set against a budget
MIN_CALLS_PER_ROUND = 10
DEFAULT_ROUNDS = 10


def default_rounds(iters: int | None) -> int:
    """DEFAULT_ROUNDS, or as many as ``iters`` calls fill with MIN_CALLS_PER_ROUND each."""
    if iters is None:
        return DEFAULT_ROUNDS
    return max(1, min(DEFAULT_ROUNDS, iters // MIN_CALLS_PER_ROUND))


def time_calls(fn: Callable[[], object], warmup: int = 10, iters: int | None = None,
               seconds: float | None = None, batch_size: int = 1,
               time_first: bool = True, rounds: int = 1) -> TimingStats:
    """Time ``fn``: the first call alone, ``warmup`` untimed calls, then ``iters`` calls or
    as many as fit in ``seconds`` (default: DEFAULT_SECONDS and at least MIN_ITERS), read
    as ``rounds`` consecutive slices."""
    check_loop(warmup, iters, seconds, rounds)
    min_iters = MIN_CALLS_PER_ROUND * rounds if rounds > 1 else 1
    if iters is None and seconds is None:
        seconds, min_iters = DEFAULT_SECONDS, max(MIN_ITERS, min_iters)
    clock = time.perf_counter
    first = None
    if time_first:
        t0 = clock()
        fn()
        first = (clock() - t0) * 1e3
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    if seconds is not None:
        deadline = clock() + seconds
        while len(samples) < min_iters or clock() < deadline:
            t0 = clock()
            fn()
            samples.append((clock() - t0) * 1e3)
    else:
        for _ in range(iters):
            t0 = clock()
            fn()
            samples.append((clock() - t0) * 1e3)
    return summarize(samples, batch_size, first, warmup, rounds)


def tail_ratio(stats: TimingStats) -> float | None:
    """p99 / p50: how far the tail sits from the typical call."""
    return stats.p99_ms / stats.p50_ms if stats.p50_ms > 0 else None


def noise_warning(stats: TimingStats) -> str | None:
    """A one-line warning when the latency tail says the machine was not quiet."""
    ratio = tail_ratio(stats)
    if ratio is not None and ratio > NOISY_TAIL_RATIO:
        return (f"noisy run: p99 is {ratio:.1f}x p50 (threshold {NOISY_TAIL_RATIO}x); other "
                "load or throttling; trust p50 and rerun on a quiet machine for the tail")
    return None


def round_range(round_p90_ms: list[float]) -> tuple[float, float]:
    """The lowest and highest round p90, one round in ten set aside at each end: a single
    burst of load (one round in ten) does not make a verdict unsettled, a phase does."""
    ordered, trim = sorted(round_p90_ms), len(round_p90_ms) // 10
    return ordered[trim], ordered[len(ordered) - 1 - trim]


def unsettled(round_p90_ms: list[float], budget_ms: float) -> bool:
    """Rounds' p90 on both sides of the budget (``round_range``): the machine's load, not
    the model, decides the verdict."""
    lo, hi = round_range(round_p90_ms)
    return lo <= budget_ms < hi
