"""Accuracy of the latency tiers on this CPU with onnxruntime, against held-out subnets.

    python benchmarks/latency_model.py [--quick] [--threads 1] [--holdout 60]

Per space: calibrate as ``gtnd calibrate --device local`` does (spanning subnets, tier-1 NNLS
fit, tier-2 block table from the node profiler), then measure >= 60 held-out random subnets
interleaved, 8 rounds of 100 runs each, and compare tiers 0, 1 and 2 with the measured
median (share within +-10%, MAPE, Kendall tau). The noise floor is the spread of each held-out
subnet's 8 round medians (max/min - 1), so the errors can be read against it. ``--quick``
does Fashion-MNIST only; the full run adds the ImageNet space at resolutions 128-160.

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
from gtn_deploy.arch import get_space  # noqa: E402
from gtn_deploy.machine import environment  # noqa: E402
from gtn_deploy.local_profile import local_device_profile  # noqa: E402
from gtn_deploy.bench.subnets import measure_subnets, random_archs, spanning_archs  # noqa: E402
from gtn_deploy.cost.calibrate import accuracy, fit_tier1, tier1_from_profile, tier1_ms  # noqa: E402
from gtn_deploy.cost.latency import roofline, tier0_ms  # noqa: E402
from gtn_deploy.cost.lut import fit_block_table  # noqa: E402

# space -> (train subnets, held-out rounds x iters, resolutions or None for the space's own)
SETTINGS = {
    "fashion-mnist": dict(train=30, rounds=8, iters=100, resolutions=None),
    "imagenet": dict(train=40, rounds=8, iters=20, resolutions=tuple(range(128, 161, 4))),
}


def run_space(name: str, holdout: int, threads: int, seed: int) -> dict:
    s = SETTINGS[name]
    space, profile = get_space(name), local_device_profile()
    rng = random.Random(seed)
    train = spanning_archs(space, s["train"], rng, s["resolutions"])
    held = random_archs(space, holdout, rng, exclude=train, resolutions=s["resolutions"])
    t_train, cal_s = measure_subnets(space, train, threads, rounds=5, iters=40)
    y_train = [t.latency_ms for t in t_train]
    t_fit = time.perf_counter()
    tier1 = fit_tier1(space, train, y_train, tier1_from_profile(profile, "fp32"))
    table = fit_block_table(space, train, [t.block_us for t in t_train], y_train, tier1)
    fit_s = time.perf_counter() - t_fit
    t_held, held_s = measure_subnets(space, held, threads, s["rounds"], s["iters"],
                                     profile_runs=0)
    y = [t.latency_ms for t in t_held]
    model0 = roofline(profile, "fp32", 1)
    preds = {"0": [tier0_ms(space, a, model0) for a in held],
             "1": [tier1_ms(space, a, tier1) for a in held]}
    preds["2"] = [table.predict_ms(space, a, tier1) or p1 for a, p1 in zip(held, preds["1"])]
    spreads = [max(t.round_medians_ms) / min(t.round_medians_ms) - 1 for t in t_held]
    return {
        "space": name, "train_subnets": len(train), "held_out_subnets": len(held),
        "resolutions": list(s["resolutions"] or space.resolutions),
        "measured_ms": {"min": min(y), "median": statistics.median(y), "max": max(y)},
        "accuracy": {tier: accuracy(p, y) for tier, p in preds.items()},
        "calibration_cost_s": {"measure_and_export": round(cal_s, 2), "fit": round(fit_s, 3)},
        "held_out_measure_s": round(held_s, 2),
        "noise_floor": {"rounds": s["rounds"], "iters_per_round": s["iters"],
                        "reference_subnet_spread": round(spreads[0], 4),
                        "median_spread": round(statistics.median(spreads), 4),
                        "max_spread": round(max(spreads), 4),
                        "reference_round_medians_ms": t_held[0].round_medians_ms},
        "tier1": tier1.to_dict(model0.peak_flops, model0.bandwidth),
        "tier2_entries": len(table.lut_us),
        "points": {"measured_ms": y, **{f"tier{k}_ms": v for k, v in preds.items()}},
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
        ax.set(xscale="log", yscale="log", xlabel="measured p50 (ms)", ylabel="predicted (ms)",
               title=f"{r['space']}: {r['held_out_subnets']} held-out subnets")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[dict]) -> str:
    rows = []
    for r in results:
        noise = r["noise_floor"]
        for tier in ("0", "1", "2"):
            a = r["accuracy"][tier]
            rows.append([r["space"], f"tier {tier}", f"{a['within_10pct']:.0%}",
                         f"{a['mape']:.1%}", f"{a['kendall_tau']:.3f}",
                         f"{r['calibration_cost_s']['measure_and_export']:.0f} s"
                         if tier != "0" else "-",
                         f"{noise['median_spread']:.1%} / {noise['max_spread']:.1%}"])
    return markdown_table(["space", "tier", "within +-10%", "MAPE", "Kendall tau",
                           "calibration cost", "noise (median / max spread)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fashion-MNIST space only.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    spaces = ["fashion-mnist"] if args.quick else ["fashion-mnist", "imagenet"]
    start = time.perf_counter()
    results = [run_space(s, args.holdout, args.threads, args.seed) for s in spaces]
    plot(results, RESULTS / "latency_model.png")
    md = table(results)
    (RESULTS / "latency_model.md").write_text(md + "\n")
    path = write_results("latency_model", {
        "command": " ".join(["python benchmarks/latency_model.py", *sys.argv[1:]]),
        "quick": args.quick, "threads": args.threads, "wall_s": round(time.perf_counter() - start, 1),
        "environment": environment(args.threads, "onnxruntime"), "spaces": results})
    print(md)
    print(f"results: {path}, {RESULTS / 'latency_model.png'}")


if __name__ == "__main__":
    main()
