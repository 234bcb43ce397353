"""Timing harness: first inference, warm-up, then a fixed count or a fixed duration."""

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

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(samples_ms: list[float], batch_size: int = 1, first_ms: float | None = None,
              warmup: int = 0) -> TimingStats:
    """Percentiles, moments and throughput of per-call latencies."""
    s = sorted(samples_ms)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else 0.0
    return TimingStats(n, percentile(s, 50), percentile(s, 90), percentile(s, 95),
                       percentile(s, 99), mean, std,
                       s[0], s[-1], batch_size * 1e3 / mean if mean > 0 else math.inf,
                       first_ms, warmup, sum(s) / 1e3)


def check_loop(warmup: int, iters: int | None, seconds: float | None) -> None:
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    if iters is not None and seconds is not None:
        raise UsageError("give --iters or --seconds, not both")
    if iters is not None and iters < 1:
        raise UsageError(f"--iters must be >= 1, got {iters}")
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise UsageError(f"--seconds must be > 0 and finite, got {seconds}")


# Without --iters or --seconds a run lasts a few seconds and at least MIN_ITERS calls, as
# trtexec and benchmark_app do: 100 calls of a 0.2 ms model is 20 ms, too short to trust.
DEFAULT_SECONDS = 3.0
MIN_ITERS = 100
# p99 / p50 above this: the tail is interference (other load, throttling), not the model
NOISY_TAIL_RATIO = 2.0


def time_calls(fn: Callable[[], object], warmup: int = 10, iters: int | None = None,
               seconds: float | None = None, batch_size: int = 1,
               time_first: bool = True) -> TimingStats:
    """Time ``fn``: the first call alone, ``warmup`` untimed calls, then ``iters`` calls or
    as many as fit in ``seconds`` (default: DEFAULT_SECONDS and at least MIN_ITERS)."""
    check_loop(warmup, iters, seconds)
    min_iters = 1
    if iters is None and seconds is None:
        seconds, min_iters = DEFAULT_SECONDS, MIN_ITERS
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
    return summarize(samples, batch_size, first, warmup)


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
