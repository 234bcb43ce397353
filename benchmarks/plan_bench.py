"""Measure `gtnd plan`: process wall time, search quality and cost-model throughput.

    python benchmarks/plan_bench.py [--quick]

Writes benchmarks/results/plan_bench.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import markdown_table, percentiles, write_results  # noqa: E402
from gtn_deploy.spaces.mbconv import get_space  # noqa: E402
from gtn_deploy.cost.analytic import network_cost  # noqa: E402
from gtn_deploy.cost.roofline import roofline, tier0_ms  # noqa: E402
from gtn_deploy.profiles import load_profile  # noqa: E402
from gtn_deploy.search.evolution import Budget, SearchConfig, evolutionary_search  # noqa: E402
from gtn_deploy.search.planner import CapacityProxy, PlanRequest, make_evaluator  # noqa: E402

TORCH_PROBE = ("import sys; from gtn_deploy.cli.main import app; "
               "sys.argv=['gtnd','plan','--device','jetson-orin-nano'];\n"
               "try:\n    app()\nexcept SystemExit:\n    pass\n"
               "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')")


def plan_wall_time(repeats: int) -> dict:
    gtnd = shutil.which("gtnd") or str(Path(sys.executable).with_name("gtnd"))
    cmd = [gtnd, "plan", "--device", "jetson-orin-nano"]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache once
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    probe = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True)
    return {"command": " ".join(["gtnd"] + cmd[1:]), "seconds": percentiles(times),
            "torch_imported": "TORCH_IMPORTED" in probe.stdout}


def tiny_space():
    base = get_space("fashion-mnist")
    return dataclasses.replace(base, name="tiny", stages=base.stages[:3], depth_choices=(1, 2),
                               kernel_choices=(3, 5, 7), expand_choices=(3, 6))


def _evaluator(space, device="raspberry-pi-4"):
    req = PlanRequest(load_profile(device), space, "fp32", 1, 1.0, 1e9)
    return make_evaluator(req, CapacityProxy())


def enumerable_quality(seeds: int) -> dict:
    """Share of (seed, budget) runs whose top candidate is the true best feasible arch."""
    space = tiny_space()
    evaluate = _evaluator(space)
    cands = [evaluate(a) for a in space.enumerate()]
    lat = sorted(c.latency_ms for c in cands)
    rows, hits, runs = [], 0, 0
    for q in (0.1, 0.3, 0.6):  # budgets admitting 10%, 30%, 60% of the space
        budget = Budget(lat[int(q * len(lat))] / 0.9, 1e9)
        best = max((c for c in cands if budget.admits(c)), key=lambda c: c.objective)
        found = sum(evolutionary_search(space, evaluate, budget, seed=s).top[0].arch == best.arch
                    for s in range(seeds))
        rows.append({"feasible_share": q, "budget_ms": round(budget.latency_ms, 4),
                     "hit_rate": found / seeds})
        hits, runs = hits + found, runs + seeds
    return {"space_size": space.size(), "seeds": seeds, "budgets": rows,
            "hit_rate": hits / runs}


def imagenet_quality(seeds: int, scale: int) -> dict:
    """Default search vs one with ~`scale`x more evaluations on the full imagenet space."""
    # A device whose budget binds (on jetson-orin-nano the largest network fits, which any
    # search finds at once): the Raspberry Pi 4 fits about a quarter of the space's latency.
    space = get_space("imagenet")
    evaluate = _evaluator(space, "raspberry-pi-4")
    profile = load_profile("raspberry-pi-4")
    budget = Budget(profile.budgets.latency_ms, profile.budgets.memory_mb)
    grow = int(scale ** 0.5)  # population and generations each grow by sqrt(scale)
    big = SearchConfig(population=100 * grow, generations=30 * grow, patience=30 * grow)
    rows = []
    for seed in range(seeds):
        start = time.perf_counter()
        small = evolutionary_search(space, evaluate, budget, seed=seed)
        t_small = time.perf_counter() - start
        start = time.perf_counter()
        large = evolutionary_search(space, evaluate, budget, seed=1000 + seed, config=big)
        t_large = time.perf_counter() - start
        a, b = small.top[0], large.top[0]
        rows.append({"seed": seed, "default_evals": small.evaluations, "default_s": round(t_small, 3),
                     "large_evals": large.evaluations, "large_s": round(t_large, 2),
                     "default_objective": round(a.objective, 5),
                     "large_objective": round(b.objective, 5),
                     "gap_percent": round(100 * (b.objective - a.objective) / abs(b.objective), 3),
                     "default_mflops": round(a.mflops, 1), "large_mflops": round(b.mflops, 1)})
    ratio = sum(r["large_evals"] for r in rows) / sum(r["default_evals"] for r in rows)
    return {"device": profile.id, "scale": scale, "eval_ratio": round(ratio, 1), "runs": rows,
            "max_gap_percent": max(r["gap_percent"] for r in rows)}


def cost_throughput(n: int) -> dict:
    space = get_space("imagenet")
    model = roofline(load_profile("jetson-orin-nano"), "fp16", 1)
    archs = [space.sample(random.Random(i)) for i in range(n)]  # fresh: no cached networks
    start = time.perf_counter()
    for arch in archs:
        network_cost(space, arch)
        tier0_ms(space, arch, model)
    seconds = time.perf_counter() - start
    return {"archs": n, "seconds": round(seconds, 3), "archs_per_second": round(n / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and seeds (CI)")
    args = parser.parse_args()
    q = args.quick
    results = {
        "quick": q,
        "plan_wall_time": plan_wall_time(5 if q else 15),
        "cost_model": cost_throughput(5000 if q else 20000),
        "enumerable_search": enumerable_quality(5 if q else 20),
        "imagenet_search": imagenet_quality(2 if q else 5, 10 if q else 100),
    }
    path = write_results("plan_bench_quick" if q else "plan_bench", results)
    wall, cost = results["plan_wall_time"], results["cost_model"]
    en, im = results["enumerable_search"], results["imagenet_search"]
    print(markdown_table(["measure", "value", "goal"], [
        ["`gtnd plan --device jetson-orin-nano` median wall time",
         f"{wall['seconds']['p50']:.2f} s (p90 {wall['seconds']['p90']:.2f} s)", "<= 1.0 s"],
        ["torch imported by plan", str(wall["torch_imported"]), "False"],
        ["cost model + tier-0 latency", f"{cost['archs_per_second']:,} archs/s", ">= 10,000"],
        [f"true best found, enumerable space ({en['space_size']} archs, {en['seeds']} seeds x 3 budgets)",
         f"{en['hit_rate']:.0%}", ">= 95%"],
        [f"imagenet on {im['device']}: gap to a search with ~{im['eval_ratio']:.0f}x the "
         f"evaluations (worst of {len(im['runs'])} seeds)",
         f"{im['max_gap_percent']:.2f}%", "<= 1%"],
    ]))
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
