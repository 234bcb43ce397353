"""OpenVINO against onnxruntime on this CPU: the same bundles, fp32 and int8, one thread.

    python benchmarks/runtimes_cpu.py --quick    # fewer rounds (~3 min with the exports)
    python benchmarks/runtimes_cpu.py            # more rounds, a longer budget

Three bundles of different sizes, exported for ``x86-laptop`` as ``gtnd export`` exports
them (fp32 ONNX and NNCF's int8 Q/DQ model, preset ``performance``): the smallest and the
largest Fashion-MNIST student (28x28, 4.6 and 44 MFLOPs) and an ImageNet student at 224x224
(474 MFLOPs, the kind of model the profile's 10 ms budget is for). The students have random
weights (BatchNorm re-estimated on the images) and the images are Gaussian noise: speed does
not depend on either, and no dataset is needed; the accuracy gates are waived. Bundles are
cached in ``--work-dir``, named by a hash of everything that makes them.

Each (bundle, runtime, precision) is built once through ``gtn_deploy.runtimes`` (the sessions
``gtnd bench`` times) and all twelve are timed in one rotation by the protocol of
``gtn_deploy.rounds``: interleaved rounds in a shuffled order, p10 of the calls pooled
over the rounds, more rounds until that figure reproduces within 3% or the budget runs out.
One process, one intra-op thread (OMP_NUM_THREADS=1). Reported: p10 and p50 ms, the
OpenVINO/onnxruntime ratio of each, the noise (spread between rounds, and the achieved
spread of the p10) and the load average. The verdict is the geometric mean of the p10 ratios
over the three bundles at fp32, the profile's preferred precision (< 1: OpenVINO faster);
int8 is reported beside it.

Writes benchmarks/results/runtimes_cpu.json and runtimes_cpu.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, markdown_table, settings_key, write_results  # noqa: E402

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
DEVICE = "x86-laptop"
PLANS = {"quick": dict(min_rounds=6, max_rounds=12, iters=10, budget_s=120.0),
         "full": dict(min_rounds=10, max_rounds=40, iters=20, budget_s=900.0)}


def bundle_specs() -> dict[str, tuple[str, object]]:
    """name -> (space, arch): three sizes."""
    from gtn_deploy.spaces.mbconv import get_space

    fm, imagenet = get_space("fashion-mnist"), get_space("imagenet")
    big = dataclasses.replace(imagenet.sample(random.Random(1)), resolution=224)
    return {"fmnist-min": ("fashion-mnist", fm.min_arch()),
            "fmnist-max": ("fashion-mnist", fm.max_arch()),
            "imagenet-r224": ("imagenet", big)}


def synthetic_data(space, resolution: int, calib: int = 300, n: int = 256, seed: int = 0):
    """Gaussian images and random labels in the export's types (speed needs no dataset)."""
    from gtn_deploy.export.data import ExportData

    rng = np.random.default_rng(seed)
    shape = (space.task.in_channels, resolution, resolution)
    images = rng.standard_normal((calib + n, *shape)).astype(np.float32)
    labels = rng.integers(0, space.task.num_classes, n).astype(np.int64)
    return ExportData(images[:calib], images[calib:], labels,
                      "synthetic: Gaussian images, random labels",
                      tuple(str(i) for i in range(space.task.num_classes)))


def export_one(name: str, space_name: str, arch, work: Path) -> Path:
    """The bundle of ``arch`` for x86-laptop, from the cache or exported now."""
    import torch

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.export.bundle import ExportOptions, export_bundle
    from gtn_deploy.profiles import load_profile
    from gtn_deploy.supernet import build_student, recalibrate_bn, save_student

    options = ExportOptions(int8=True, allow_accuracy_drop=True, max_drop_points=100.0,
                            presets=("performance",), calib_images=300, eval_images=256,
                            parity_images=256, tarball=False, name=name)
    key = settings_key({"space": space_name, "arch": arch.to_dict(), "device": DEVICE,
                        "options": dataclasses.asdict(options), "seed": 0})
    folder = work / f"{name}-{key}"
    if (folder / "bundle" / name / "manifest.json").is_file():
        return folder / "bundle" / name
    space = get_space(space_name)
    data = synthetic_data(space, arch.resolution)
    torch.manual_seed(0)
    model = build_student(space, arch)
    recalibrate_bn(model, [torch.from_numpy(data.eval_images[i:i + 32]) for i in range(0, 256, 32)])
    save_student(folder / "student", model.eval(), arch, space)
    result = export_bundle(model.eval(), arch, space, folder / "student", {},
                           load_profile(DEVICE), folder / "bundle", options, data,
                           progress=False)
    return result.path


def build_runners(bundles: dict[str, Path]):
    """(bundle, runtime, precision) -> (runner, input): the sessions gtnd bench times."""
    from gtn_deploy.manifest import load_manifest
    from gtn_deploy.runtimes import runtime_for
    from gtn_deploy.runtimes.base import model_file

    out = {}
    for name, path in bundles.items():
        manifest = load_manifest(path)
        shape = [1, *manifest.input["shape"][1:]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for rt in RUNTIMES:
            for precision in PRECISIONS:
                runner = runtime_for(rt).session(model_file(path, manifest, precision), 1,
                                                 precision)
                out[(name, rt, precision)] = (runner, x)
    return out


def parity(runners) -> dict[str, float]:
    """Max |logit difference| OpenVINO vs onnxruntime on each bundle's input, per precision."""
    diffs = {}
    for (name, rt, precision), (runner, x) in runners.items():
        if rt == "openvino":
            ref = runners[(name, "onnxruntime", precision)][0].run(x)
            diffs[f"{name} {precision}"] = float(np.abs(np.asarray(runner.run(x)) - ref).max())
    return diffs


def measure(runners, plan_kw: dict, seed: int):
    from gtn_deploy.rounds import RoundPlan, round_spread, round_timer, run_rounds

    keys = list(runners)
    plan = RoundPlan(**plan_kw)
    timers = [round_timer(lambda r=runners[k][0], x=runners[k][1]: r.run(x), plan.warmup,
                          plan.iters) for k in keys]
    res = run_rounds(lambda i: timers[i](), len(keys), plan, random.Random(seed))
    rows = {}
    for i, key in enumerate(keys):
        calls = sorted(t for r in res.rounds[i] for t in r)
        medians = [statistics.median(r) for r in res.rounds[i]]
        rows[key] = {"p10_ms": res.latency_ms(i), "p50_ms": statistics.median(calls),
                     "rounds": len(res.rounds[i]), "calls": len(calls),
                     "spread_p10": res.spread(i), "spread_between_rounds": round_spread(medians)}
    return rows, {"stop": res.stop, "seconds": round(res.seconds, 1),
                  "plan": dataclasses.asdict(plan)}


def summarise(rows: dict, bundles: dict, macs: dict) -> list[dict]:
    out = []
    for name in bundles:
        for precision in PRECISIONS:
            ort, ov = rows[(name, "onnxruntime", precision)], rows[(name, "openvino", precision)]
            out.append({"bundle": name, "mflops": macs[name], "precision": precision,
                        "onnxruntime": ort, "openvino": ov,
                        "ratio_p10": ov["p10_ms"] / ort["p10_ms"],
                        "ratio_p50": ov["p50_ms"] / ort["p50_ms"]})
    return out


def verdict(table: list[dict]) -> dict:
    """The decision (fp32, the profile's preferred precision) and, beside it, int8 and each
    runtime at its fastest precision (what a profile preferring int8 would compare)."""
    def geomean(ratios) -> float:
        ratios = list(ratios)
        return math.exp(sum(math.log(v) for v in ratios) / len(ratios))

    best = {}
    for name in dict.fromkeys(r["bundle"] for r in table):
        rows = [r for r in table if r["bundle"] == name]
        pick = {rt: min(rows, key=lambda r: r[rt]["p10_ms"]) for rt in RUNTIMES}
        best[name] = {**{f"{rt}_precision": pick[rt]["precision"] for rt in RUNTIMES},
                      **{f"{rt}_p10_ms": pick[rt][rt]["p10_ms"] for rt in RUNTIMES}}
        best[name]["ratio_p10"] = best[name]["openvino_p10_ms"] / best[name]["onnxruntime_p10_ms"]
    fp32 = geomean(r["ratio_p10"] for r in table if r["precision"] == "fp32")
    return {"rule": "geometric mean of the OpenVINO/onnxruntime p10 ratios over the bundles "
                    "at fp32 (x86-laptop's preferred precision); < 1: OpenVINO faster",
            "fp32_geomean_ratio": round(fp32, 4),
            "int8_geomean_ratio": round(geomean(r["ratio_p10"] for r in table
                                                if r["precision"] == "int8"), 4),
            "best_precision": best,
            "best_precision_geomean_ratio": round(geomean(b["ratio_p10"]
                                                          for b in best.values()), 4),
            "faster": "openvino" if fp32 < 1 else "onnxruntime"}


def markdown(doc: dict) -> str:
    head = ["bundle", "MFLOPs", "precision", "ORT p10 ms", "ORT p50 ms", "OV p10 ms",
            "OV p50 ms", "OV/ORT p10", "OV/ORT p50", "noise ORT / OV"]
    rows = []
    for r in doc["table"]:
        o, v = r["onnxruntime"], r["openvino"]
        rows.append([r["bundle"], f"{r['mflops']:.1f}", r["precision"], f"{o['p10_ms']:.3f}",
                     f"{o['p50_ms']:.3f}", f"{v['p10_ms']:.3f}", f"{v['p50_ms']:.3f}",
                     f"{r['ratio_p10']:.2f}", f"{r['ratio_p50']:.2f}",
                     f"{o['spread_between_rounds']:.0%} / {v['spread_between_rounds']:.0%}"])
    v, c, m = doc["verdict"], doc["conditions_here"], doc["measurement"]
    return (f"# OpenVINO vs onnxruntime on {c['cpu_model']} ({doc['mode']})\n\n"
            f"onnxruntime {doc['versions']['onnxruntime']}, OpenVINO "
            f"{doc['versions']['openvino']}; 1 intra-op thread, batch 1, one process; "
            f"{c['cores']} cores, load average {c['load_avg_start']} at start, "
            f"{c['load_avg_end']} at end (another job ran on the second core). "
            f"Protocol: gtn_deploy.rounds, {m['plan']['iters']} calls a round, "
            f"{m['rounds_min']}-{m['rounds_max']} rounds, stopped: {m['stop']}. "
            f"Noise: slowest round median / fastest - 1.\n\n"
            + markdown_table(head, rows)
            + f"\n\nVerdict ({v['rule']}): fp32 {v['fp32_geomean_ratio']:.2f}: "
            f"**{v['faster']}** is faster here at fp32. Beside it: int8 "
            f"{v['int8_geomean_ratio']:.2f}; each runtime at its fastest precision "
            f"{v['best_precision_geomean_ratio']:.2f} ("
            + ", ".join(f"{k}: OV {b['openvino_precision']} {b['openvino_p10_ms']:.3f} ms vs "
                        f"ORT {b['onnxruntime_precision']} {b['onnxruntime_p10_ms']:.3f} ms"
                        for k, b in v["best_precision"].items()) + ").\n\n"
            "Logits, OpenVINO vs onnxruntime, max |difference|: "
            + ", ".join(f"{k} {d:.1e}" for k, d in doc["parity_max_abs_diff"].items()) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, a shorter budget")
    ap.add_argument("--work-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "gtnd-runtimes-cpu",
                    help="cache of the exported bundles")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="runtimes_cpu", help="results file name")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.cost.analytic import network_cost
    from gtn_deploy.machine import cpu_model, usable_cores
    from gtn_deploy.runtimes import RUNTIMES as ALL

    mode = "quick" if args.quick else "full"
    load_start = round(os.getloadavg()[0], 2)
    specs = bundle_specs()
    bundles = {name: export_one(name, space, arch, args.work_dir)
               for name, (space, arch) in specs.items()}
    mflops = {name: network_cost(get_space(space), arch).flops / 1e6
              for name, (space, arch) in specs.items()}
    runners = build_runners(bundles)
    diffs = parity(runners)
    rows, info = measure(runners, PLANS[mode], args.seed)
    table = summarise(rows, bundles, mflops)
    doc = {"benchmark": "runtimes_cpu", "mode": mode, "device_profile": DEVICE,
           "versions": {rt: ALL[rt].version() for rt in RUNTIMES},
           "conditions_here": {"cpu_model": cpu_model(), "cores": usable_cores(),
                               "threads": 1, "batch_size": 1, "load_avg_start": load_start,
                               "load_avg_end": round(os.getloadavg()[0], 2)},
           "bundles": {name: {"space": specs[name][0], "arch": specs[name][1].summary(),
                              "mflops": round(mflops[name], 1)} for name in specs},
           "measurement": {**info, "rounds_min": min(r["rounds"] for r in rows.values()),
                           "rounds_max": max(r["rounds"] for r in rows.values())},
           "parity_max_abs_diff": diffs, "table": table, "verdict": verdict(table)}
    path = write_results(args.name, doc)
    text = markdown(doc)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
