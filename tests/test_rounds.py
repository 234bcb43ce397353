"""The measuring protocol of gtn_deploy.rounds on synthetic timings: no real clock is asserted."""

from __future__ import annotations

import random
from statistics import median

import pytest

from gtn_deploy.rounds import (RoundPlan, half_spread, robust_ms, round_spread,
                                     run_rounds)
from gtn_deploy.errors import UsageError


def noisy_calls(base_ms: float, n: int, rng: random.Random, burst: float = 1.0,
                spikes: float = 0.05) -> list[float]:
    """Calls of ``base_ms`` with small jitter, slowed ``burst`` times, and rare spikes."""
    return [base_ms * burst * (1 + 0.02 * rng.random()) * (8 if rng.random() < spikes else 1)
            for _ in range(n)]


def bursty_rounds(base_ms: float, n_rounds: int, rng: random.Random) -> list[list[float]]:
    """Every third round under a 2.5x burst of other load, the rest quiet."""
    return [noisy_calls(base_ms, 20, rng, burst=2.5 if r % 3 == 1 else 1.0)
            for r in range(n_rounds)]


def test_statistic_holds_under_bursts():
    rng = random.Random(0)
    rounds = bursty_rounds(1.0, 12, rng)
    assert robust_ms(rounds) == pytest.approx(1.0, rel=0.02)
    # The median of all calls moves with the bursts; the p10 does not.
    heavier = [noisy_calls(1.0, 20, rng, burst=2.5 if r % 3 else 1.0) for r in range(12)]
    assert robust_ms(heavier) == pytest.approx(1.0, rel=0.02)
    assert median(t for r in heavier for t in r) > 2.0
    assert round_spread([median(r) for r in rounds]) > 1.0  # the raw noise is large


def test_half_spread():
    assert half_spread([[1.0] * 5]) == float("inf")
    assert half_spread([[1.0] * 5] * 4) == 0.0
    # A burst in some rounds of one half leaves the p10 where it was.
    rng = random.Random(1)
    assert half_spread(bursty_rounds(1.0, 12, rng)) < 0.02
    # A floor that moved between the halves shows up.
    assert half_spread([[1.0] * 5] * 3 + [[1.2] * 5] * 3) == pytest.approx(1 - 1 / 1.2)


class FakeMachine:
    """Models timed by ``time_round``; a 3x burst hits whatever runs during the model-rounds
    ``burst`` of the whole session; a fake clock advances one second per model-round."""

    def __init__(self, base_ms: list[float], drifting: set[int] = frozenset(),
                 burst: range = range(0)):
        self.base, self.drifting, self.burst = base_ms, drifting, burst
        self.calls, self.now, self.rng = [], 0.0, random.Random(2)
        self.per_model: dict[int, int] = {}

    def time_round(self, i: int) -> list[float]:
        burst = 3.0 if len(self.calls) in self.burst else 1.0
        k = self.per_model[i] = self.per_model.get(i, 0) + 1
        self.calls.append(i)
        self.now += 1.0
        base = self.base[i] * (1 + 0.1 * k if i in self.drifting else 1)
        return noisy_calls(base, 20, self.rng, burst=burst, spikes=0.0)

    def clock(self) -> float:
        return self.now


def test_rounds_are_interleaved_and_shuffled():
    m = FakeMachine([0.1 * (i + 1) for i in range(6)], burst=range(10, 25))
    plan = RoundPlan(min_rounds=5, max_rounds=5)
    res = run_rounds(m.time_round, 6, plan, random.Random(0), m.clock)
    chunks = [res.order[k:k + 6] for k in range(0, len(res.order), 6)]
    assert len(chunks) == 5 and all(sorted(c) == list(range(6)) for c in chunks)
    assert len({tuple(c) for c in chunks}) > 1  # a new order each round
    assert res.order == m.calls and res.stop == "max_rounds"
    # The burst (calls 10-24) fell on every model at least once, and it cost none its figure.
    assert all(robust_ms(res.rounds[i]) == pytest.approx(0.1 * (i + 1), rel=0.03)
               for i in range(6))


def test_stopping_rule_converges_and_keeps_drifting_models():
    m = FakeMachine([0.2, 0.3, 0.4, 0.5], drifting={3}, burst=range(1, 3))
    plan = RoundPlan(min_rounds=4, max_rounds=12, spread_bound=0.03, budget_s=1e9)
    res = run_rounds(m.time_round, 4, plan, random.Random(0), m.clock)
    assert [len(r) for r in res.rounds[:3]] == [4, 4, 4]  # stable: leave at min_rounds
    assert len(res.rounds[3]) == 12 and res.stop == "max_rounds"
    assert all(res.spread(i) <= 0.03 for i in range(3)) and res.spread(3) > 0.03

    stable = FakeMachine([0.2, 0.3])
    res = run_rounds(stable.time_round, 2, plan, random.Random(0), stable.clock)
    assert res.stop == "converged" and [len(r) for r in res.rounds] == [4, 4]


def test_time_budget_stops_after_min_rounds():
    m = FakeMachine([0.2, 0.3, 0.4], drifting={0, 1, 2})
    plan = RoundPlan(min_rounds=3, max_rounds=40, budget_s=15.0)
    res = run_rounds(m.time_round, 3, plan, random.Random(0), m.clock)
    assert res.stop == "budget" and [len(r) for r in res.rounds] == [5, 5, 5]


def test_plan_checked():
    with pytest.raises(UsageError):
        RoundPlan(min_rounds=5, max_rounds=3).check()
    with pytest.raises(UsageError):
        RoundPlan(spread_bound=0).check()


def test_block_times_drop_warmup_and_resist_bursts():
    from gtn_deploy.bench.subnets import _block_times

    # Two rounds of (2 warm-up + 4 runs); the warm-up runs are slow, one run is a burst.
    conv = [50, 40, 10, 10, 30, 10, 50, 40, 10, 11, 10, 10]
    head = [9, 9, 2, 2, 2, 2, 9, 9, 2, 2, 2, 20]
    events = [{"cat": "Session", "name": "model_run"}]
    for c, h in zip(conv, head):
        events += [{"cat": "Node", "name": "/stages.1/blocks.0/conv/Conv_kernel_time", "dur": c},
                   {"cat": "Node", "name": "/head/fc/Gemm_kernel_time", "dur": h},
                   {"cat": "Node", "name": "reorder_token_kernel_time", "dur": 1}]
    blocks = _block_times(events, warmup=2, period=6)
    assert blocks == {"s1.b0": pytest.approx(10.0), "head": pytest.approx(3.0)}


def test_budget_never_stops_before_two_rounds():
    m = FakeMachine([0.2, 0.3], drifting={0, 1})
    res = run_rounds(m.time_round, 2, RoundPlan(min_rounds=1, budget_s=0.5), random.Random(0),
                     m.clock)
    assert res.stop == "budget" and [len(r) for r in res.rounds] == [2, 2]
    assert all(res.spread(i) < float("inf") for i in range(2))
