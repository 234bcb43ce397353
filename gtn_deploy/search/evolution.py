"""Constrained evolutionary search over a search space (Once-for-All style, no torch).

The search knows only interfaces: ``evaluate(arch) -> Candidate`` (cost model + objective)
and the budgets. It maximises the objective subject to predicted latency <= budget x
(1 - margin) and memory <= budget, and returns the top-k feasible candidates, spread along
the Pareto front (latency vs objective) of everything it evaluated, and that front.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from gtn_deploy.errors import SearchError
from gtn_deploy.spaces.base import Arch, Space


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    objective: float
    latency_ms: float
    memory_mb: float
    mflops: float
    params: int


@dataclass(frozen=True)
class Budget:
    latency_ms: float
    memory_mb: float
    margin: float = 0.1

    @property
    def effective_latency_ms(self) -> float:
        return self.latency_ms * (1 - self.margin)

    def admits(self, cand: Candidate) -> bool:
        return cand.latency_ms <= self.effective_latency_ms and cand.memory_mb <= self.memory_mb


@dataclass(frozen=True)
class SearchConfig:
    population: int = 100
    generations: int = 30
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    max_sample_tries: int = 20  # random draws per population slot before mutating instead
    patience: int = 8  # stop after this many generations without a better best
    tier_ratio: float = 0.8  # each further top-k candidate is at most this x the last's latency


@dataclass
class SearchResult:
    top: list[Candidate]
    pareto: list[Candidate]
    evaluations: int
    history: list[float] = field(default_factory=list)  # best objective per generation


class _Memo:
    """Evaluate each architecture once; the search revisits many."""

    def __init__(self, evaluate: Callable[[Arch], Candidate]):
        self.evaluate, self.seen = evaluate, {}

    def __call__(self, arch: Arch) -> Candidate:
        cand = self.seen.get(arch)
        if cand is None:
            cand = self.seen[arch] = self.evaluate(arch)
        return cand


def evolutionary_search(space: Space, evaluate: Callable[[Arch], Candidate],
                        budget: Budget, seed: int = 0, top_k: int = 5,
                        config: SearchConfig = SearchConfig()) -> SearchResult:
    """Seeded and deterministic: the same inputs give the same result."""
    rng = random.Random(seed)
    memo = _Memo(evaluate)
    smallest = memo(space.min_arch())
    if not budget.admits(smallest):
        raise SearchError(_infeasible_message(smallest, budget))
    population = [_feasible_sample(space, memo, budget, rng, config, smallest)
                  for _ in range(config.population - 1)]
    largest = memo(space.max_arch())  # a loose budget's answer, found at once
    population.append(largest if budget.admits(largest) else smallest)
    n_parents = max(2, int(config.population * config.parent_ratio))
    n_mutants = int(config.population * config.mutation_ratio)
    history: list[float] = []
    for _ in range(config.generations):
        parents = sorted(population, key=_rank_key)[:n_parents]
        history.append(parents[0].objective)
        if len(history) > config.patience and history[-1] <= history[-1 - config.patience]:
            break
        children = [_child(space, memo, budget, rng, config, parents, mutate=i < n_mutants)
                    for i in range(config.population - n_parents)]
        population = parents + children
    feasible = [c for c in memo.seen.values() if budget.admits(c)]
    front = pareto_front(feasible)
    top = spread_top_k(feasible, front, top_k, config.tier_ratio)
    return SearchResult(top, front, len(memo.seen), history)


def spread_top_k(feasible: list[Candidate], front: list[Candidate], top_k: int,
                 tier_ratio: float = 0.8) -> list[Candidate]:
    """The best candidate, then the best of each lower latency tier, best first.

    The k best by objective alone are near-copies of the best (one kernel apart, the same
    latency), which leaves nothing to choose from. Each further pick is the front member with
    the highest objective at most ``ratio`` x the previous pick's latency, where ``ratio`` is
    ``tier_ratio`` or finer when the front is too short for k tiers of that size. Gaps in the
    front are filled by the front member farthest (in log latency) from those chosen, then by
    the next best by objective.
    """
    ranked = sorted(feasible, key=_rank_key)
    if not ranked:
        return []
    chosen = [ranked[0]]
    if front and top_k > 1:
        span = front[0].latency_ms / chosen[0].latency_ms
        ratio = max(tier_ratio, span ** (1 / (top_k - 1)))
        by_latency = sorted(front, key=lambda c: (-c.latency_ms, _rank_key(c)))
        while len(chosen) < top_k:
            ceiling = chosen[-1].latency_ms * ratio * (1 + 1e-9)
            pick = next((c for c in by_latency if c.latency_ms <= ceiling), None)
            if pick is None or pick.arch == chosen[-1].arch:
                break
            chosen.append(pick)
    _fill(chosen, front, top_k)
    _fill(chosen, ranked, top_k, spread=False)
    return sorted(chosen, key=_rank_key)


def _fill(chosen: list[Candidate], pool: list[Candidate], top_k: int, spread: bool = True):
    used = {c.arch for c in chosen}
    rest = [c for c in pool if c.arch not in used]
    while len(chosen) < top_k and rest:
        if spread:  # the one whose latency is farthest from every chosen one
            pick = max(rest, key=lambda c: min(abs(math.log(c.latency_ms / o.latency_ms))
                                               for o in chosen))
        else:
            pick = rest[0]
        chosen.append(pick)
        rest.remove(pick)


def _rank_key(cand: Candidate):
    # Highest objective first; ties broken by lower latency, then by the arch itself so
    # the order never depends on dict or set iteration.
    return (-cand.objective, cand.latency_ms, cand.arch.to_json())


def _feasible_sample(space: Space, memo, budget, rng, config, fallback) -> Candidate:
    for _ in range(config.max_sample_tries):
        cand = memo(space.sample(rng))
        if budget.admits(cand):
            return cand
    # Tight budgets: random draws rarely fit; grow from the smallest network instead.
    return _mutate_feasible(space, memo, budget, rng, fallback, prob=0.3, tries=10)


def _child(space: Space, memo, budget, rng, config, parents, mutate: bool) -> Candidate:
    """A feasible child, preferring architectures not evaluated yet: re-proposing known ones
    wastes a population slot on a duplicate."""
    fallback = None
    for _ in range(config.max_sample_tries):
        if mutate:
            arch = space.mutate(rng.choice(parents).arch, rng, config.mutate_prob)
        else:
            a, b = rng.sample(parents, 2)
            arch = space.crossover(a.arch, b.arch, rng)
        seen = arch in memo.seen
        cand = memo(arch)
        if budget.admits(cand):
            if not seen:
                return cand
            fallback = fallback or cand
    return fallback or rng.choice(parents)


def _mutate_feasible(space: Space, memo, budget, rng, start: Candidate, prob: float,
                     tries: int) -> Candidate:
    best = start
    for _ in range(tries):
        cand = memo(space.mutate(best.arch, rng, prob))
        if budget.admits(cand):
            best = cand
    return best


def pareto_front(cands: list[Candidate]) -> list[Candidate]:
    """Candidates no other beats on both latency (lower) and objective (higher)."""
    front, best = [], float("-inf")
    for cand in sorted(cands, key=lambda c: (c.latency_ms, -c.objective, c.arch.to_json())):
        if cand.objective > best:
            front.append(cand)
            best = cand.objective
    return front


def _infeasible_message(smallest: Candidate, budget: Budget) -> str:
    return (f"no architecture of the space meets the budget (latency <= {budget.latency_ms:g} ms "
            f"with a {budget.margin:.0%} margin, memory <= {budget.memory_mb:g} MB): the smallest "
            f"network reaches {smallest.latency_ms:.3g} ms and {smallest.memory_mb:.3g} MB")
