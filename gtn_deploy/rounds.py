"""Interleaved measuring rounds: the latency protocol that holds on a noisy machine.

Used by ``gtnd calibrate`` and ``benchmarks/latency_model.py``; this docstring is where the
protocol is written down.

1. **Interleaved rounds.** Round r times every model still in rotation once (``warmup``
   untimed calls, then ``iters`` timed calls), in an order shuffled anew each round. A burst
   of other load then falls on all models alike, not on the few being measured at that
   moment. Calibration and held-out subnets share one rotation, so the fit and its
   validation are measured under the same conditions.
2. **Statistic: p10 of the calls** (``LOW_QUANTILE``), pooled over all of a model's rounds.
   Interference only adds time, so the fastest calls are the ones it left alone; p10 and not
   the minimum, so that one lucky call does not set the figure. Chosen by measurement: 90
   subnets x 30 rounds of 20 calls on a 2-core machine running two training jobs (load
   3.6-4.1, round medians of a subnet 91% apart, median over subnets). Computed on rounds
   0-9, 10-19 and 20-29 separately, p10 agreed with itself within 1.5% (median over subnets;
   none beyond 5%), p20 2.0% (0.4% beyond 5%), the minimum of the round medians 1.6% (7%),
   the median of all calls 4.5% (42%).
3. **Adaptive rounds.** A model's *spread* is |stat(first half of its rounds) / stat(second
   half) - 1|: whether the figure comes out the same measured later. After ``min_rounds``, a
   model whose spread is at most ``spread_bound`` (3%) leaves the rotation; measuring stops
   when none is left, after ``max_rounds``, or once ``budget_s`` has passed (the first
   ``min_rounds``, and at least two, always run). Every model's achieved spread is reported
   with its latency.

The raw noise, reported beside accuracy figures, is the *spread between rounds*: a model's
slowest round median over its fastest, minus 1.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from gtn_deploy.errors import UsageError
from gtn_deploy.stats import percentile

LOW_QUANTILE = 10.0  # percent
SPREAD_BOUND = 0.03


@dataclass(frozen=True)
class RoundPlan:
    """How many rounds, how long each, and when to stop."""

    min_rounds: int = 6
    max_rounds: int = 40
    iters: int = 20
    warmup: int = 5
    spread_bound: float = SPREAD_BOUND
    budget_s: float = 60.0

    def check(self) -> None:
        if self.min_rounds < 1 or self.max_rounds < self.min_rounds or self.iters < 1:
            raise UsageError(f"need 1 <= min_rounds <= max_rounds and iters >= 1 (got "
                             f"{self.min_rounds}, {self.max_rounds}, {self.iters})")
        if self.warmup < 0 or self.spread_bound <= 0 or self.budget_s <= 0:
            raise UsageError("warmup must be >= 0, spread bound and time budget > 0")


def robust_ms(rounds: Sequence[Sequence[float]]) -> float:
    """The protocol's statistic: LOW_QUANTILE of all calls pooled over ``rounds``."""
    return percentile(sorted(t for r in rounds for t in r), LOW_QUANTILE)


def half_spread(rounds: Sequence[Sequence[float]]) -> float:
    """|statistic on the first half of the rounds / on the second half - 1| (inf below 2)."""
    if len(rounds) < 2:
        return float("inf")
    half = len(rounds) // 2
    return abs(robust_ms(rounds[:half]) / robust_ms(rounds[half:]) - 1)


def round_spread(round_medians: Sequence[float]) -> float:
    """Raw noise: slowest round median / fastest round median - 1."""
    return max(round_medians) / min(round_medians) - 1


def round_timer(call: Callable[[], object], warmup: int, iters: int
                ) -> Callable[[], list[float]]:
    """One round of one model: ``warmup`` untimed calls (the other models ran since: caches
    are cold again), then the ms of each of ``iters`` timed calls."""
    clock = time.perf_counter

    def time_round() -> list[float]:
        for _ in range(warmup):
            call()
        times = []
        for _ in range(iters):
            t0 = clock()
            call()
            times.append((clock() - t0) * 1e3)
        return times

    return time_round


@dataclass
class RoundsResult:
    """Per model: its rounds of per-call ms; the order models were timed in; why it stopped."""

    rounds: list[list[list[float]]]
    order: list[int]
    stop: str
    seconds: float

    def latency_ms(self, i: int) -> float:
        return robust_ms(self.rounds[i])

    def spread(self, i: int) -> float:
        return half_spread(self.rounds[i])


def run_rounds(time_round: Callable[[int], list[float]], n: int, plan: RoundPlan,
               rng: random.Random, clock: Callable[[], float] = time.perf_counter
               ) -> RoundsResult:
    """Interleaved adaptive rounds over ``n`` models; ``time_round(i)`` times model i once
    (its warm-up and ``plan.iters`` calls) and returns the per-call ms."""
    plan.check()
    rounds: list[list[list[float]]] = [[] for _ in range(n)]
    active, order, start, stop = list(range(n)), [], clock(), "max_rounds"
    for r in range(plan.max_rounds):
        rng.shuffle(active)
        for i in active:
            rounds[i].append(list(time_round(i)))
            order.append(i)
        if r + 1 < max(plan.min_rounds, 2):  # a spread needs two rounds
            continue
        active = sorted(i for i in active if half_spread(rounds[i]) > plan.spread_bound)
        if not active:
            stop = "converged"
            break
        if clock() - start >= plan.budget_s:
            stop = "budget"
            break
    return RoundsResult(rounds, order, stop, clock() - start)
