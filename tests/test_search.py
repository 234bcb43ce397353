import dataclasses

import pytest

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.errors import SearchError
from gtn_deploy.profiles import load_profile
from gtn_deploy.search.evolution import Budget, SearchConfig, evolutionary_search
from gtn_deploy.search.planner import CapacityProxy, PlanRequest, make_evaluator, plan_device


def tiny_space():
    """Small enough to enumerate: 3 stages, depth {1,2}, kernel {3,5}, expand {3,6}."""
    base = get_space("fashion-mnist")
    return dataclasses.replace(base, name="tiny", stages=base.stages[:3], depth_choices=(1, 2),
                               kernel_choices=(3, 5), expand_choices=(3, 6))


def _request(space, latency_ms, memory_mb=100.0, device="raspberry-pi-4", seed=0):
    profile = load_profile(device)
    return PlanRequest(profile, space, "fp32", 1, latency_ms, memory_mb, 0.1, 5, seed)


def test_search_finds_the_true_best_on_an_enumerable_space():
    space = tiny_space()
    assert space.size() == 8000
    evaluate = make_evaluator(_request(space, 1.0), CapacityProxy())
    cands = [evaluate(a) for a in space.enumerate()]
    latencies = sorted(c.latency_ms for c in cands)
    budget = Budget(latencies[len(latencies) // 3] / 0.9, 100.0)  # a third of the space fits
    best = max((c for c in cands if budget.admits(c)), key=lambda c: c.objective)
    hits = 0
    for seed in range(5):
        result = evolutionary_search(space, evaluate, budget, seed=seed,
                                     config=SearchConfig(population=50, generations=20))
        hits += result.top[0].arch == best.arch
    assert hits >= 4


def test_candidates_meet_budgets_and_are_distinct():
    space = get_space("imagenet")
    result, entry = plan_device(_request(space, 150.0, memory_mb=40.0),
                                config=SearchConfig(population=40, generations=10))
    assert len({c.arch for c in result.top}) == len(result.top) == 5
    for cand in entry["candidates"]:
        assert cand["latency_ms"] <= 150.0 * 0.9 + 1e-9 and cand["memory_mb"] <= 40.0
    objectives = [c["objective"] for c in entry["candidates"]]
    assert objectives == sorted(objectives, reverse=True)
    front = [(p["latency_ms"], p["objective"]) for p in entry["pareto"]]
    assert all(a[0] <= b[0] and a[1] < b[1] for a, b in zip(front, front[1:]))


def test_search_is_deterministic():
    space, config = get_space("cifar100"), SearchConfig(population=30, generations=5)
    runs = [plan_device(_request(space, 200.0, seed=3), config=config)[1]["candidates"]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_impossible_budget_names_the_smallest_reachable():
    with pytest.raises(SearchError, match=r"smallest network reaches [\d.]+ ms and [\d.]+ MB"):
        plan_device(_request(get_space("imagenet"), 0.5))



def test_top_k_is_spread_over_latency_tiers():
    """Not near-copies of the best: each next candidate is a lower latency tier of the front."""
    space = get_space("imagenet")
    result, entry = plan_device(_request(space, 150.0, memory_mb=40.0),
                                config=SearchConfig(population=40, generations=10))
    latencies = [c.latency_ms for c in result.top]
    assert result.top[0].objective == max(c.objective for c in result.top)
    assert all(b <= a * 0.8 + 1e-9 for a, b in zip(latencies, latencies[1:])), latencies
    front = {c.arch for c in result.pareto}
    assert all(c.arch in front for c in result.top)


def test_spread_top_k_narrows_its_tiers_to_a_short_front():
    from gtn_deploy.search.evolution import Candidate, pareto_front, spread_top_k

    space = tiny_space()
    archs = list(space.enumerate())[:40]
    cands = [Candidate(a, objective=i, latency_ms=10 + i * 0.1, memory_mb=1, mflops=i, params=i)
             for i, a in enumerate(archs)]  # latency 10-13.9 ms: too short for 0.8 steps
    top = spread_top_k(cands, pareto_front(cands), 5)
    assert top[0] is cands[-1] and len({c.arch for c in top}) == 5
    gaps = [a.latency_ms - b.latency_ms for a, b in zip(top, top[1:])]
    assert min(gaps) >= 0.5, [c.latency_ms for c in top]  # spread, not the five slowest


def test_budget_binding_reports_a_loose_budget_only():
    space = get_space("imagenet")
    config = SearchConfig(population=30, generations=5)
    loose = plan_device(_request(space, 10_000.0, memory_mb=1000.0), config=config)[1]
    tight = plan_device(_request(space, 150.0, memory_mb=40.0), config=config)[1]
    assert loose["budget_binding"]["binds"] is False
    assert "does not bind" in loose["budget_binding"]["note"]
    assert "--latency-ms below" in loose["budget_binding"]["note"]
    assert tight["budget_binding"] == {**tight["budget_binding"], "binds": True, "note": None}
