"""Accuracy of the latency tiers on this CPU with onnxruntime, against held-out subnets.

    python benchmarks/latency_model.py [--quick] [--threads 1] [--holdout 60] [--seed 0]

Per space: calibrate as ``gtnd calibrate --device local`` does (spanning subnets, tier-1 NNLS
fit, tier-2 block table from the node profiler) and compare tiers 0, 1 and 2 with >= 60
held-out random subnets (share within +-10%, MAPE, Kendall tau). Calibration and held-out
subnets are measured in one rotation by the protocol of ``gtn_deploy.rounds``
(interleaved rounds in a shuffled order, p10 of the calls, more rounds until that figure
reproduces within 3% or the time budget runs out). Beside every accuracy figure: the noise,
as the median spread between a subnet's rounds (slowest round median / fastest - 1) and the
median achieved spread of the p10 (first half of the rounds against the second), and the
machine's load average at start and end. Tier 0 is the ``local`` profile, with the figures
of its probe (``gtn_deploy.local_probe``) unless GTND_LOCAL_PROBE=off. Few-shot: tiers 1 and
2 refitted on 5, 10, 20 of the calibration subnets (the two ends of the FLOPs range and
evenly spaced ones between).
``--quick`` does Fashion-MNIST only; the full run adds the ImageNet space at resolutions
128-160.

Writes benchmarks/results/latency_model.json, latency_model.png (predicted vs measured) and
latency_model.md (the README table).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, markdown_table, write_results  # noqa: E402
from gtn_deploy.spaces.mbconv import get_space  # noqa: E402
from gtn_deploy.machine import environment  # noqa: E402
from gtn_deploy import local_probe  # noqa: E402
from gtn_deploy.local_profile import local_device_profile  # noqa: E402
from gtn_deploy.bench.calibration import measurement_summary  # noqa: E402
from gtn_deploy.rounds import RoundPlan  # noqa: E402
from gtn_deploy.bench.subnets import measure_subnets, random_archs, spanning_archs  # noqa: E402
from gtn_deploy.cost.calibrate import accuracy, fit_tier1, tier1_from_profile  # noqa: E402
from gtn_deploy.cost.roofline import roofline, tier0_ms  # noqa: E402
from gtn_deploy.cost.tier1 import tier1_ms  # noqa: E402
from gtn_deploy.cost.lut import fit_block_table  # noqa: E402

# space -> (calibration subnets, measuring plan, resolutions or None for the space's own)
SETTINGS = {
    "fashion-mnist": dict(train=30, plan=RoundPlan(min_rounds=6, max_rounds=40, iters=20,
                                                   budget_s=90.0), resolutions=None),
    "imagenet": dict(train=40, plan=RoundPlan(min_rounds=6, max_rounds=30, iters=5,
                                              budget_s=600.0),
                     resolutions=tuple(range(128, 161, 4))),
}
FEW_SHOT = (5, 10, 20)


def load_avg() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where /proc/loadavg is absent)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def spanning_subset(train: list, n: int) -> list[int]:
    """Indices of ``n`` of the spanning calibration subnets: the two ends of the FLOPs range
    (``spanning_archs`` puts them first) and evenly spaced ones among the rest."""
    rest = len(train) - 2
    return [0, 1] + [2 + round(i * (rest - 1) / max(1, n - 3)) for i in range(n - 2)]


def fit_and_predict(space, profile, train, t_train, held) -> dict:
    """Tier 0-2 predictions of ``held`` from calibration timings ``t_train``."""
    y_train = [t.latency_ms for t in t_train]
    tier1 = fit_tier1(space, train, y_train, tier1_from_profile(profile, "fp32"))
    table = fit_block_table(space, train, [t.block_us for t in t_train], y_train, tier1)
    model0 = roofline(profile, "fp32", 1)
    preds = {"0": [tier0_ms(space, a, model0) for a in held],
             "1": [tier1_ms(space, a, tier1) for a in held]}
    preds["2"] = [table.predict_ms(space, a, tier1) or p1 for a, p1 in zip(held, preds["1"])]
    return {"preds": preds, "tier1": tier1.to_dict(model0.peak_flops, model0.bandwidth),
            "tier2_entries": len(table.lut_us)}


def few_shot(space, profile, train, t_train, held, y) -> list[dict]:
    """Held-out accuracy of tiers 1 and 2 against the number of calibration subnets."""
    curve = []
    for n in [k for k in FEW_SHOT if k < len(train)] + [len(train)]:
        idx = spanning_subset(train, n) if n < len(train) else list(range(len(train)))
        fit = fit_and_predict(space, profile, [train[i] for i in idx],
                              [t_train[i] for i in idx], held)
        curve.append({"calibration_subnets": n, **{
            f"tier{k}_within_10pct": accuracy(fit["preds"][k], y)["within_10pct"]
            for k in ("1", "2")}})
    return curve


def run_space(name: str, holdout: int, threads: int, seed: int) -> dict:
    s = SETTINGS[name]
    space, profile = get_space(name), local_device_profile()
    rng = random.Random(seed)
    train = spanning_archs(space, s["train"], rng, s["resolutions"])
    held = random_archs(space, holdout, rng, exclude=train, resolutions=s["resolutions"])
    timings, info = measure_subnets(space, train + held, threads, s["plan"],
                                    profiled=len(train), seed=seed)
    t_train, t_held = timings[:len(train)], timings[len(train):]
    y = [t.latency_ms for t in t_held]
    t_fit = time.perf_counter()
    fit = fit_and_predict(space, profile, train, t_train, held)
    fit_s = time.perf_counter() - t_fit
    preds = fit["preds"]
    return {
        "space": name, "train_subnets": len(train), "held_out_subnets": len(held),
        "resolutions": list(s["resolutions"] or space.resolutions),
        "measured_ms": {"min": min(y), "median": statistics.median(y), "max": max(y)},
        "accuracy": {tier: accuracy(p, y) for tier, p in preds.items()},
        "few_shot": few_shot(space, profile, train, t_train, held, y),
        "calibration_cost_s": {"measure_and_export": round(info["seconds"], 2),
                               "export": round(info["export_s"], 2),
                               "timing": round(info["timing_s"], 2), "fit": round(fit_s, 3)},
        "noise": {**measurement_summary(timings, info), "plan": info["plan"],
                  "reference_round_medians_ms": t_held[0].round_medians_ms},
        "tier1": fit["tier1"], "tier2_entries": fit["tier2_entries"],
        "points": {"measured_ms": y, "spread": [t.spread for t in t_held],
                   **{f"tier{k}_ms": v for k, v in preds.items()}},
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 5), squeeze=False)
    for ax, r in zip(axes[0], results):
        y = r["points"]["measured_ms"]
        for tier, marker in (("0", "x"), ("1", "s"), ("2", "o")):
            a = r["accuracy"][tier]
            ax.scatter(y, r["points"][f"tier{tier}_ms"], s=14, marker=marker,
                       label=f"tier {tier}: {a['within_10pct']:.0%} in +-10%, "
                             f"tau {a['kendall_tau']:.2f}")
        lo, hi = min(y) * 0.8, max(y) * 1.25
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="k",
                        alpha=0.08, label="+-10%")
        ax.set(xscale="log", yscale="log", xlabel="measured p10 (ms)", ylabel="predicted (ms)",
               title=f"{r['space']}: {r['held_out_subnets']} held-out subnets")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[dict], load: dict) -> str:
    """Accuracy with the noise beside it, the few-shot curve, and the load."""
    rows, curve = [], []
    for r in results:
        n = r["noise"]
        noise = (f"{n['spread_between_rounds_median']:.1%} / {n['spread_median']:.1%} "
                 f"(max {n['spread_max']:.1%})")
        for tier in ("0", "1", "2"):
            a = r["accuracy"][tier]
            rows.append([r["space"], f"tier {tier}", f"{a['within_10pct']:.0%}",
                         f"{a['mape']:.1%}", f"{a['kendall_tau']:.3f}",
                         f"{r['calibration_cost_s']['measure_and_export']:.0f} s"
                         if tier != "0" else "-", noise])
        curve += [[r["space"], c["calibration_subnets"], f"{c['tier1_within_10pct']:.0%}",
                   f"{c['tier2_within_10pct']:.0%}"] for c in r["few_shot"]]
        rounds = (f"{r['space']}: {n['rounds'][0]}-{n['rounds'][1]} rounds of "
                  f"{n['plan']['iters']} calls, stopped: {n['stop']}, "
                  f"{n['within_bound']:.0%} of subnets within the {n['spread_bound']:.0%} bound")
    head = markdown_table(["space", "tier", "within +-10%", "MAPE", "Kendall tau",
                           "calibration cost",
                           "noise: spread between rounds / of p10, median"], rows)
    few = markdown_table(["space", "calibration subnets", "tier 1 within +-10%",
                          "tier 2 within +-10%"], curve)
    return (f"{head}\n\n{rounds}; load average (1/5/15 min) {load['start']} at start, "
            f"{load['end']} at end.\n\nFew-shot (same held-out subnets):\n\n{few}")


def probe_line(probe: dict | None) -> str:
    """What tier 0 used: the local profile's probe figures, or its seeds."""
    if not probe:
        return "Tier 0: the local profile's seed figures (GTND_LOCAL_PROBE=off)."
    f = probe["figures"]
    rates = ", ".join(f"{k} {v:.1f}" for k, v in f["gflops"].items())
    return (f"Tier 0: the local profile with its probe's figures (a {probe['seconds']:.2f} s "
            f"probe at load {probe['load_avg_1m']:.2f}): invoke {f['invoke_us']:.1f} us, "
            f"kernel {f['kernel_us']:.2f} us, {f['bandwidth_gbs']:.1f} GB/s, GFLOP/s {rates}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fashion-MNIST space only.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0,
                    help="Chooses the subnets and the round orders; results of a seed other "
                         "than 0 go to latency_model_seed<N>.*")
    args = ap.parse_args()
    spaces = ["fashion-mnist"] if args.quick else ["fashion-mnist", "imagenet"]
    name = "latency_model" if args.seed == 0 else f"latency_model_seed{args.seed}"
    start, load = time.perf_counter(), {"start": load_avg()}
    results = [run_space(s, args.holdout, args.threads, args.seed) for s in spaces]
    load["end"] = load_avg()
    plot(results, RESULTS / f"{name}.png")
    probe = local_probe.probe()  # what tier 0 used (cached at the profile's first use)
    md = table(results, load) + "\n\n" + probe_line(probe)
    (RESULTS / f"{name}.md").write_text(md + "\n")
    path = write_results(name, {
        "command": " ".join(["python benchmarks/latency_model.py", *sys.argv[1:]]),
        "quick": args.quick, "threads": args.threads, "seed": args.seed,
        "wall_s": round(time.perf_counter() - start, 1), "load_avg": load,
        "environment": environment(args.threads, "onnxruntime"), "local_probe": probe,
        "spaces": results})
    print(md)
    print(f"results: {path}, {RESULTS / f'{name}.png'}")


if __name__ == "__main__":
    main()
