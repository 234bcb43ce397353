"""Plan: which students of the space fit a device (no torch).

Glues the cost model, a device profile and an objective into the evolutionary search, and
turns the result into the plan.json document that teacher training and distillation read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from gtn_deploy import __version__
from gtn_deploy.spaces import budget_reference, family_of
from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.cost.analytic import network_cost
from gtn_deploy.cost.latency import (LatencyEstimate, LatencyModel, latency_model,
                                     predict_memory_mb)
from gtn_deploy.cost.roofline import roofline, tier0_ms
from gtn_deploy.errors import UsageError
from gtn_deploy.plan_file import PLAN_KIND, PLAN_SCHEMA_VERSION
from gtn_deploy.search.evolution import (Budget, Candidate, SearchConfig, SearchResult,
                                         evolutionary_search)

if TYPE_CHECKING:
    from gtn_deploy.profiles import DeviceProfile


class Objective(Protocol):
    """What the search maximises; an accuracy predictor or the capacity proxy."""

    name: str

    def __call__(self, arch: Arch, mflops: float, params: int) -> float: ...


class CapacityProxy:
    """Stand-in for accuracy when no predictor is trained yet.

    Accuracy of networks of one family rises roughly log-linearly with compute and with
    parameters (Once-for-All's accuracy/FLOPs fronts, scaling studies), so the proxy is
    log10(MFLOPs) + 0.5 * log10(params). It prefers the largest network under the budget;
    a trained predictor (``gtnd plan --predictor``) replaces it.
    """

    name = "capacity-proxy"

    def __call__(self, arch: Arch, mflops: float, params: int) -> float:
        return math.log10(max(mflops, 1e-9)) + 0.5 * math.log10(max(params, 1))


@dataclass(frozen=True)
class PlanRequest:
    profile: "DeviceProfile"
    space: Space
    precision: str
    batch_size: int
    latency_ms: float
    memory_mb: float
    margin: float = 0.1
    top_k: int = 5
    seed: int = 0
    budget_source: str = "given"  # given, profile or scaled: what --scale-budget would change

    @classmethod
    def for_device(cls, profile: "DeviceProfile", space: Space, *,
                   precision: str | None = None, batch_size: int | None = None,
                   latency_ms: float | None = None, memory_mb: float | None = None,
                   scale_budget: bool = False, margin: float = 0.1, top_k: int = 5,
                   seed: int = 0) -> "PlanRequest":
        """Fill what was not given from the profile; an explicit latency is never scaled."""
        precision = precision or profile.preferred_precision
        batch_size = profile.budgets.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
        if not 0 <= margin < 1:  # NaN fails every comparison, so it is refused too
            raise UsageError(f"--margin must be in [0, 1), got {margin}")
        budget_ms = profile.budgets.latency_ms if latency_ms is None else latency_ms
        source = "profile" if latency_ms is None else "given"
        if scale_budget and latency_ms is None and precision in profile.precisions:
            budget_ms = task_scaled_budget_ms(profile, space, budget_ms, precision, batch_size)
            source = "scaled"
        return cls(profile, space, precision, batch_size, budget_ms,
                   profile.budgets.memory_mb if memory_mb is None else memory_mb,
                   margin, top_k, seed, source)


def task_scaled_budget_ms(profile: "DeviceProfile", space: Space, latency_ms: float,
                          precision: str, batch_size: int = 1) -> float:
    """Carry a latency budget set for 224-pixel ImageNet models over to another task.

    Profile budgets are set for ImageNet-sized inputs; on a 28-pixel task every device would
    fit the largest student and all devices would get the same one. Scaling the budget by the
    ratio of the two spaces' largest networks (tier 0, this device and precision) keeps each
    device at the same relative place in its space: a device that fits a quarter of the
    ImageNet max network's latency gets a quarter of the task's max network's latency.
    """
    reference = budget_reference(space.task.name)
    if reference is None:
        return latency_ms
    task, imagenet = reference
    if task.name == imagenet.name:
        return latency_ms
    model = roofline(profile, precision, batch_size)
    ratio = tier0_ms(task, task.max_arch(), model) / tier0_ms(imagenet, imagenet.max_arch(), model)
    return latency_ms * ratio


def make_evaluator(req: PlanRequest, objective: Objective,
                   model: LatencyModel | None = None) -> Callable[[Arch], Candidate]:
    """One cheap evaluation per architecture: cost model, latency, memory, objective."""
    model = model or request_latency_model(req)

    def evaluate(arch: Arch) -> Candidate:
        cost = network_cost(req.space, arch)
        latency = model.latency_ms(arch, cost)
        memory = predict_memory_mb(req.space, arch, req.precision, req.batch_size, cost)
        return Candidate(arch, objective(arch, cost.mflops, cost.params), latency, memory,
                         cost.mflops, cost.params)

    return evaluate


def plan_device(req: PlanRequest, objective: Objective | None = None,
                config: SearchConfig = SearchConfig()) -> tuple[SearchResult, dict]:
    """Search one device; return the raw result and its plan.json entry."""
    for name in ("latency_ms", "memory_mb"):
        value = getattr(req, name)
        if not (value > 0 and math.isfinite(value)):  # also refuses NaN and infinity
            raise UsageError(f"--{name.replace('_', '-')} must be > 0 and finite, got {value}")
    if req.precision not in req.profile.precisions:
        raise UsageError(f"precision '{req.precision}' is not supported on {req.profile.id}; "
                         f"supported: {', '.join(req.profile.precisions)}")
    objective = objective or CapacityProxy()
    budget = Budget(req.latency_ms, req.memory_mb, req.margin)
    model = request_latency_model(req)
    evaluate = make_evaluator(req, objective, model)
    result = evolutionary_search(req.space, evaluate, budget,
                                 seed=req.seed, top_k=req.top_k, config=config)
    entry = _device_entry(req, budget, result, objective, model)
    entry["budget_binding"] = budget_binding(req, budget, evaluate(req.space.max_arch()))
    return result, entry


def budget_binding(req: PlanRequest, budget: Budget, largest: Candidate) -> dict:
    """Whether the budget chooses anything: when the space's largest subnet fits, it does not,
    and every device with such a budget gets the same student."""
    binds = not budget.admits(largest)
    entry = {"binds": binds, "largest_latency_ms": round(largest.latency_ms, 4),
             "largest_memory_mb": round(largest.memory_mb, 4), "note": None}
    if not binds:
        bind_below = largest.latency_ms / (1 - req.margin)
        bigger = next_bigger_space(req.space)
        if req.space.task.name != "imagenet" and req.budget_source == "profile":
            space_hint = "--scale-budget (profile budgets are for ImageNet)"
        elif bigger:
            space_hint = f"a bigger space (--task {bigger})"
        else:
            space_hint = f"a bigger space ({req.space.name} is the largest)"
        entry["note"] = (
            f"the budget does not bind: the largest {req.space.name} subnet fits "
            f"({largest.latency_ms:.3g} ms, {1 - largest.latency_ms / req.latency_ms:.0%} "
            f"headroom); try --latency-ms below {bind_below:.3g} or {space_hint}")
    return entry


def next_bigger_space(space: Space) -> str | None:
    """The task (of the same family) whose space's largest subnet is the next up in MFLOPs,
    if any."""
    own = network_cost(space, space.max_arch()).mflops
    sizes = sorted((network_cost(s, s.max_arch()).mflops, name)
                   for name, s in family_of(space).task_spaces.items())
    return next((name for mflops, name in sizes if mflops > own * 1.01), None)


def request_latency_model(req: PlanRequest) -> LatencyModel:
    return latency_model(req.profile, req.space, req.precision, req.batch_size)


def _device_entry(req: PlanRequest, budget: Budget, result: SearchResult,
                  objective: Objective, model: LatencyModel) -> dict:
    first = model.estimate(result.top[0].arch)
    return {
        "device": req.profile.id,
        "device_name": req.profile.name,
        "profile_sha256": req.profile.content_hash,
        "profile_path": str(req.profile.source_path),
        "runtime": {"name": req.profile.runtime.name, "version": req.profile.runtime.version},
        "precision": req.precision,
        "batch_size": req.batch_size,
        "budget": {"latency_ms": req.latency_ms, "percentile": req.profile.budgets.percentile,
                   "memory_mb": req.memory_mb, "margin": req.margin,
                   "effective_latency_ms": round(budget.effective_latency_ms, 4)},
        "latency_model": {"tier": first.tier, "fingerprint": first.fingerprint,
                          "expected_error": round(first.high_ms / first.latency_ms - 1, 3)},
        "objective": objective.name,
        "search": {"seed": req.seed, "evaluations": result.evaluations},
        "candidates": [_candidate_dict(req, model.estimate(c.arch), c) for c in result.top],
        "pareto": [{"latency_ms": round(c.latency_ms, 4), "objective": round(c.objective, 5),
                    "mflops": round(c.mflops, 3), "arch": c.arch.to_dict()} for c in result.pareto],
    }


def _candidate_dict(req: PlanRequest, est: LatencyEstimate, cand: Candidate) -> dict:
    return {
        "arch": cand.arch.to_dict(),
        "summary": cand.arch.summary(),
        "objective": round(cand.objective, 5),
        "latency_ms": round(est.latency_ms, 4),
        "latency_band_ms": [round(est.low_ms, 4), round(est.high_ms, 4)],
        "latency_tier": est.tier,
        "mflops": round(cand.mflops, 3),
        "params": cand.params,
        "memory_mb": round(cand.memory_mb, 4),
        "latency_headroom": round(1 - est.latency_ms / req.latency_ms, 4),
        "memory_headroom": round(1 - cand.memory_mb / req.memory_mb, 4),
        "within_band": est.high_ms <= req.latency_ms,
    }


def plan_document(space: Space, devices: list[dict]) -> dict:
    """The plan.json document for one or more devices."""
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "kind": PLAN_KIND,
        "tool_version": __version__,
        "task": space.task.name,
        "family": space.family,
        "space": space.name,
        "devices": devices,
    }
