"""Constrained evolutionary search over a search space (Once-for-All style, no torch).

The search knows only interfaces: ``evaluate(arch) -> Candidate`` (cost model + objective)
and the budgets. It maximises the objective subject to predicted latency <= budget x
(1 - margin) and memory <= budget, and returns the top-k distinct feasible candidates and
the Pareto front (latency vs objective) of everything it evaluated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from gtn_deploy.arch import ArchConfig, SearchSpace
from gtn_deploy.errors import SearchError


@dataclass(frozen=True)
class Candidate:
    arch: ArchConfig
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


@dataclass
class SearchResult:
    top: list[Candidate]
    pareto: list[Candidate]
    evaluations: int
    history: list[float] = field(default_factory=list)  # best objective per generation


class _Memo:
    """Evaluate each architecture once; the search revisits many."""

    def __init__(self, evaluate: Callable[[ArchConfig], Candidate]):
        self.evaluate, self.seen = evaluate, {}

    def __call__(self, arch: ArchConfig) -> Candidate:
        cand = self.seen.get(arch)
        if cand is None:
            cand = self.seen[arch] = self.evaluate(arch)
        return cand


def evolutionary_search(space: SearchSpace, evaluate: Callable[[ArchConfig], Candidate],
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
    top = sorted(feasible, key=_rank_key)[:top_k]
    return SearchResult(top, pareto_front(feasible), len(memo.seen), history)


def _rank_key(cand: Candidate):
    # Highest objective first; ties broken by lower latency, then by the arch itself so
    # the order never depends on dict or set iteration.
    return (-cand.objective, cand.latency_ms, cand.arch.to_json())


def _feasible_sample(space, memo, budget, rng, config, fallback) -> Candidate:
    for _ in range(config.max_sample_tries):
        cand = memo(space.sample(rng))
        if budget.admits(cand):
            return cand
    # Tight budgets: random draws rarely fit; grow from the smallest network instead.
    return _mutate_feasible(space, memo, budget, rng, fallback, prob=0.3, tries=10)


def _child(space, memo, budget, rng, config, parents, mutate: bool) -> Candidate:
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


def _mutate_feasible(space, memo, budget, rng, start: Candidate, prob: float,
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
