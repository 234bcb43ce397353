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

``--space imagenet`` is the check at the scale users deploy (issue 24), on a published
supernet: Once-for-All's MobileNetV3 w1.0 built by OFA's own code (the ``ofa`` package, as
``tests/ofa_helpers.py`` builds it: random weights, no download) and imported with
``gtn_deploy.supernet.ofa_import``. Then, as a user does: calibrate ``local`` as
``gtnd calibrate --device local --task imagenet --seed N`` does (its own 30 + 20 random
subnets at 128-224 px); plan for ``local`` in the imagenet space with that profile (the
profile's budget, no scaling; its top ``--planned`` candidates); extract those and
``--holdout`` random subnets at 128-224 px from the imported supernet; export each as
``gtnd export`` does (parity gate, fp32) and time the bundles' models by the protocol
above, reporting p10 (the protocol's figure, what calibration fits) and the p50 of the
same calls, and each bundle's ``gtnd bench`` p50 (consecutive calls). Predictions: tier 0
from the uncalibrated ``local`` profile, tiers 1 and 2 from the calibrated one. Beside them,
tiers 1 and 2 fitted as calibrate fits them on as many spanning random students timed in
the bundles' own rotation: the same fit without the minutes (and load change) between
calibrating and benchmarking. Writes imagenet_latency.{json,md,png} (seed 0) or
imagenet_latency_seed<N>.*.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from gtn_deploy.bench.subnets import (export_all, measure_subnets, profile_interleaved,  # noqa: E402
                                      random_archs, spanning_archs)
from gtn_deploy.cost.calibrate import accuracy, fit_tier1, tier1_from_profile  # noqa: E402
from gtn_deploy.cost.analytic import network_cost  # noqa: E402
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
# --space imagenet: how the imported subnets' bundles are timed (one rotation, as calibration)
BUNDLE_PLAN = RoundPlan(min_rounds=6, max_rounds=30, iters=20, budget_s=240.0)
BENCH_ITERS = 200  # each bundle's gtnd bench (consecutive calls, its p50)
TIERS = ("0", "1", "2")


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


# --- --space imagenet: an imported Once-for-All supernet at 128-224 px ---------------------

def imported_supernet(folder: Path, seed: int) -> Path:
    """OFA's MobileNetV3 w1.0 by OFA's own code, random weights (``tests/ofa_helpers.py``),
    saved as OFA publishes it and imported by ``gtnd supernet import --from ofa-mbv3``'s
    code; returns the supernet folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from ofa_helpers import random_ofa_mbv3, save_as_published

    from gtn_deploy.supernet.ofa_import import import_supernet

    checkpoint = folder / "ofa_mbv3_d234_e346_k357_w1.0"
    save_as_published(random_ofa_mbv3(1.0, seed=seed), checkpoint)
    import_supernet("ofa-mbv3", checkpoint, folder / "supernet")
    return folder / "supernet"


def image_tree(root: Path) -> Path:
    """A tiny ImageFolder tree for the export's gates (2 classes, 256 validation images: the
    parity gate's minimum; accuracy is meaningless here, latency is what is measured)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 128)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png")
    return root


def export_imported(supernet_dir: Path, archs, profile, tree: Path, folder: Path,
                    budget_ms: float) -> list[Path]:
    """Each arch's student taken out of the imported supernet (as ``gtnd extract``, no BN
    recalibration: latency does not depend on the statistics) and exported as ``gtnd
    export`` does (fp32, parity gate); returns the bundle folders."""
    from gtn_deploy.export.bundle import ExportOptions, export_student
    from gtn_deploy.supernet import load_supernet, save_student

    supernet, doc = load_supernet(supernet_dir)
    bundles = []
    for i, arch in enumerate(archs):
        student = folder / f"student_{i:02d}"
        save_student(student, supernet.extract(arch).eval(), arch, supernet.space,
                     {"extracted_from": {"supernet": str(supernet_dir),
                                         "imported_from": doc.get("source")}})
        options = ExportOptions(int8=False, calib_images=0, data_dir=str(tree), name=f"bundle_{i:02d}",
                                allow_accuracy_drop=True, budget_ms=budget_ms, tarball=False)
        bundles.append(export_student(student, profile, folder, options, progress=False).path)
    return bundles


def tier_models(space, base, calibrated):
    """Tier 0 of the uncalibrated profile; tiers 1 and 2 of the calibrated one's fit."""
    from gtn_deploy.cost.latency import Tier0, Tier1Model, Tier2Model
    from gtn_deploy.cost.lut import BlockTable
    from gtn_deploy.cost.tier1 import Tier1

    cal = calibrated.calibration
    t1 = Tier1Model(space, Tier1.from_dict(cal["tier1"]), 1, 0.0, cal["fingerprint"])
    t2 = Tier2Model(BlockTable.from_dict(cal["tier2"]), t1, 0.0)
    return {"0": Tier0(space, roofline(base, "fp32", 1)), "1": t1, "2": t2}


def run_imported(seed: int, planned: int, holdout: int, log) -> dict:
    import tempfile

    from gtn_deploy.bench.calibration import calibrate
    from gtn_deploy.bench.run import bench_bundle
    from gtn_deploy.bench.subnets import measure_interleaved
    from gtn_deploy.profiles import load_profile_file
    from gtn_deploy.search.planner import PlanRequest, plan_device
    from gtn_deploy.stats import percentile

    space, base = get_space("imagenet"), local_device_profile()
    with tempfile.TemporaryDirectory(prefix="gtnd-imagenet-latency-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        supernet = imported_supernet(tmp, seed)
        import_s = time.perf_counter() - t
        log(f"imported a random OFA w1.0 supernet in {import_s:.0f} s; calibrating local")
        t = time.perf_counter()
        cal_path, calibration = calibrate("local", task="imagenet", seed=seed,
                                          out=tmp / "local-calibrated.yaml")
        calibrate_s = time.perf_counter() - t
        profile = load_profile_file(cal_path)
        log(f"calibrated in {calibrate_s:.0f} s (tier {calibration['tier']}); planning")
        _, entry = plan_device(PlanRequest.for_device(profile, space, top_k=planned,
                                                      seed=seed))
        plan_archs = [space.arch_from_dict(c["arch"]) for c in entry["candidates"]]
        rng = random.Random(seed)
        archs = plan_archs + random_archs(space, holdout, rng, exclude=plan_archs,
                                          resolutions=space.resolutions)
        t = time.perf_counter()
        bundles = export_imported(supernet, archs, profile, image_tree(tmp / "tree"), tmp,
                                  entry["budget"]["latency_ms"])
        # the same fit measured beside the bundles: calibrate's number of spanning random
        # students, timed in one rotation with the bundles (tiers 1 and 2 then see the load
        # the bundles saw; the calibrate fit above was measured minutes earlier)
        fit_archs = spanning_archs(space, calibration["measurement"]["train_subnets"], rng)
        fit_paths = export_all(space, fit_archs, tmp)
        export_s = time.perf_counter() - t
        log(f"exported {len(bundles)} bundles and {len(fit_archs)} fit subnets in "
            f"{export_s:.0f} s; timing them in one rotation")
        every, res = measure_interleaved(space, fit_archs + archs,
                                         fit_paths + [b / "model.onnx" for b in bundles], 1,
                                         BUNDLE_PLAN, rng)
        for x, blocks in zip(every, profile_interleaved(space, fit_archs, fit_paths, 1, 30,
                                                        rng)):
            x.block_us = blocks
        t = time.perf_counter()
        benches = [bench_bundle(b, iters=BENCH_ITERS, threads=1) for b in bundles]
        bench_s = time.perf_counter() - t
    n_fit = len(fit_archs)
    timings = every[n_fit:]
    p10 = [x.latency_ms for x in timings]
    p50 = [percentile(sorted(c for r in rounds for c in r), 50) for rounds in res.rounds[n_fit:]]
    bench_p50 = [b["timing"]["p50_ms"] for b in benches]
    models = tier_models(space, base, profile)
    preds = {k: [m.latency_ms(a) for a in archs] for k, m in models.items()}
    beside = fit_and_predict(space, base, fit_archs, every[:n_fit], archs)
    preds.update({f"{k}_same_rotation": beside["preds"][k] for k in ("1", "2")})
    groups = {"all": range(len(archs)), "planned": range(len(plan_archs)),
              "random": range(len(plan_archs), len(archs))}
    measured = {"p10": p10, "p50": p50, "bench_p50": bench_p50}

    def acc(stat, idx):
        idx = list(idx)
        return {k: accuracy([preds[k][i] for i in idx], [measured[stat][i] for i in idx])
                for k in preds}

    info = {"seconds": res.seconds, "rounds_min": min(len(r) for r in res.rounds),
            "rounds_max": max(len(r) for r in res.rounds), "stop": res.stop,
            "plan": dataclasses.asdict(BUNDLE_PLAN)}
    return {
        "space": space.name, "seed": seed, "supernet": "ofa_mbv3_d234_e346_k357_w1.0 "
        "(OFA's own code, random weights), imported with gtn_deploy.supernet.ofa_import",
        "calibrate_command": f"gtnd calibrate --device local --task imagenet --seed {seed}",
        "plan": {"budget": entry["budget"], "candidates": len(plan_archs)},
        "planned_subnets": len(plan_archs), "random_subnets": len(archs) - len(plan_archs),
        "resolutions": sorted({a.resolution for a in archs}),
        "accuracy": {stat: {g: acc(stat, idx) for g, idx in groups.items()}
                     for stat in measured},
        "same_rotation_fit": {"subnets": n_fit, "tier1": beside["tier1"],
                              "tier2_entries": beside["tier2_entries"]},
        "calibration": {"tier": calibration["tier"], "trusted": calibration["trusted"],
                        "tier1": calibration["tier1"],
                        "held_out_random_students": calibration["validation"]["held_out"],
                        "measurement": calibration["measurement"]},
        "seconds": {"import": round(import_s, 1), "calibrate": round(calibrate_s, 1),
                    "export": round(export_s, 1), "timing": round(res.seconds, 1),
                    "bench": round(bench_s, 1)},
        "noise": {**measurement_summary(timings, info), "plan": info["plan"]},
        "points": {"arch": [a.summary() for a in archs],
                   "mflops": [round(network_cost(space, a).flops / 1e6, 2) for a in archs],
                   "resolution": [a.resolution for a in archs],
                   "measured_p10_ms": p10, "measured_p50_ms": p50, "bench_p50_ms": bench_p50,
                   "bench_spread_p99_over_p50": [b["noise"]["p99_over_p50"] for b in benches],
                   **{f"tier{k}_ms": v for k, v in preds.items()}},
    }


def imported_table(r: dict, load: dict) -> str:
    rows = []
    for stat, label in (("p10", "p10 of interleaved rounds"),
                        ("p50", "p50 of interleaved rounds"),
                        ("bench_p50", "gtnd bench p50")):
        for tier in TIERS + ("1_same_rotation", "2_same_rotation"):
            a = r["accuracy"][stat]
            rows.append([label, f"tier {tier[0]}" + (", fitted in the bundles' rotation"
                                                     if len(tier) > 1 else ""),
                         f"{a['all'][tier]['within_10pct']:.0%}",
                         f"{a['planned'][tier]['within_10pct']:.0%}",
                         f"{a['random'][tier]['within_10pct']:.0%}",
                         f"{a['all'][tier]['mape']:.1%}", f"{a['all'][tier]['kendall_tau']:.3f}"])
    head = markdown_table(["measured", "tier", "within +-10% (all)", "planned", "random",
                           "MAPE", "Kendall tau"], rows)
    n, c, p = r["noise"], r["calibration"], r["points"]
    cal = c["held_out_random_students"]
    return (f"Seed {r['seed']}: {r['planned_subnets']} planned + {r['random_subnets']} random "
            f"subnets of an imported OFA MobileNetV3 w1.0 (random weights), "
            f"{min(r['resolutions'])}-{max(r['resolutions'])} px, "
            f"{min(p['mflops']):.0f}-{max(p['mflops']):.0f} MFLOPs, measured p10 "
            f"{min(p['measured_p10_ms']):.2f}-{max(p['measured_p10_ms']):.2f} ms; plan budget "
            f"{r['plan']['budget']['percentile']} {r['plan']['budget']['latency_ms']:g} ms.\n\n"
            f"{head}\n\n`{r['calibrate_command']}`: tier {c['tier']}, its own held-out random "
            f"students within +-10%: tier 0 {cal['0']['within_10pct']:.0%}, tier 1 "
            f"{cal['1']['within_10pct']:.0%}, tier 2 {cal['2']['within_10pct']:.0%}.\n\n"
            f"Bundles: {n['rounds'][0]}-{n['rounds'][1]} rounds of {n['plan']['iters']} calls, "
            f"stopped: {n['stop']}, {n['within_bound']:.0%} within the "
            f"{n['spread_bound']:.0%} bound, spread between rounds (median) "
            f"{n['spread_between_rounds_median']:.1%}; load average (1/5/15 min) "
            f"{load['start']} at start, {load['end']} at end.")


def plot_imported(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, stat in zip(axes, ("p10", "p50")):
        y = r["points"][f"measured_{stat}_ms"]
        for tier, marker in (("0", "x"), ("1", "s"), ("2", "o")):
            a = r["accuracy"][stat]["all"][tier]
            ax.scatter(y, r["points"][f"tier{tier}_ms"], s=16, marker=marker,
                       label=f"tier {tier}: {a['within_10pct']:.0%} in +-10%")
        lo, hi = min(y) * 0.8, max(y) * 1.25
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="k",
                        alpha=0.08, label="+-10%")
        ax.set(xscale="log", yscale="log", xlabel=f"measured {stat} (ms)",
               ylabel="predicted (ms)",
               title=f"imported OFA w1.0, seed {r['seed']}: {len(y)} bundles")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_imported(args) -> None:
    from benchmarks.common import elapsed_log

    name = "imagenet_latency" if args.seed == 0 else f"imagenet_latency_seed{args.seed}"
    start, load = time.perf_counter(), {"start": load_avg()}
    result = run_imported(args.seed, args.planned, args.holdout, elapsed_log(start))
    load["end"] = load_avg()
    plot_imported(result, RESULTS / f"{name}.png")
    probe = local_probe.probe()
    md = imported_table(result, load) + "\n\n" + probe_line(probe)
    (RESULTS / f"{name}.md").write_text(md + "\n")
    path = write_results(name, {
        "command": " ".join(["python benchmarks/latency_model.py", *sys.argv[1:]]),
        "threads": 1, "seed": args.seed, "wall_s": round(time.perf_counter() - start, 1),
        "load_avg": load, "environment": environment(1, "onnxruntime"), "local_probe": probe,
        "result": result})
    print(md)
    print(f"results: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fashion-MNIST space only.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=None,
                    help="held-out random subnets (default 60; 14 with --space imagenet)")
    ap.add_argument("--seed", type=int, default=0,
                    help="Chooses the subnets and the round orders; results of a seed other "
                         "than 0 go to latency_model_seed<N>.*")
    ap.add_argument("--space", choices=["imagenet"], default=None,
                    help="imagenet: an imported Once-for-All supernet's bundles at 128-224 px "
                         "against a gtnd calibrate --device local --task imagenet fit (see "
                         "the docstring); --holdout is then its random subnets")
    ap.add_argument("--planned", type=int, default=10,
                    help="--space imagenet: the plan's top candidates to export")
    args = ap.parse_args()
    if args.space == "imagenet":
        args.holdout = 14 if args.holdout is None else args.holdout
        return main_imported(args)
    args.holdout = 60 if args.holdout is None else args.holdout
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
