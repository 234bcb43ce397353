"""Export benchmark: PyTorch eager vs onnxruntime fp32 vs NNCF INT8, parity, export time.

For each student (briefly trained with cross-entropy on a Fashion-MNIST subset so that an
INT8 accuracy drop means something) this exports a bundle for a CPU profile and reports:
onnxruntime fp32 latency vs PyTorch eager at batch 1 (ratio), onnxruntime INT8 vs fp32
(ratio) and the top-1 drop per NNCF preset, parity figures and export wall time.
Latency: one intra-op thread everywhere, 20 warm-up + 300 timed runs, p50.

    python benchmarks/export_bench.py --quick      # 3 students, ~10 s training each
    python benchmarks/export_bench.py              # 5 students, ~40 s training each
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def train_student(space, arch, images, labels, epochs: int, seed: int):
    """Adam + cross-entropy, batch 64, one intra-op thread; returns (model, seconds)."""
    import torch

    from gtn_deploy.export.onnx import torch_threads
    from gtn_deploy.supernet import build_student

    torch.manual_seed(seed)
    model = build_student(space, arch)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    start = time.perf_counter()
    model.train()
    with torch_threads(1):
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    return model.eval(), time.perf_counter() - start


def eager_latency_ms(model, shape, iters: int = 300, warmup: int = 20) -> float:
    import torch

    from gtn_deploy.export.onnx import torch_threads

    x = torch.randn(shape)
    with torch.no_grad(), torch_threads(1):
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(times, 50))


def ort_latency_ms(path, shape) -> float:
    from gtn_deploy.export.onnx import measure_latency_ms
    from gtn_deploy.runtimes.onnxruntime import inference_session

    return measure_latency_ms(inference_session(path, 1), shape, iters=300)["p50_ms"]


def bench_student(i, arch, space, train, data, profile, args, workdir) -> dict:
    from gtn_deploy.export.bundle import ExportOptions, export_bundle
    from gtn_deploy.supernet import save_student

    model, train_s = train_student(space, arch, train[0], train[1], args.epochs, seed=i)
    student_dir = workdir / f"student{i}"
    save_student(student_dir, model, arch, space, {"metrics": {"train_s": round(train_s, 1)}})
    options = ExportOptions(int8=True, allow_accuracy_drop=True, max_drop_points=1.0,
                            eval_images=len(data.eval_images), name=f"s{i}")
    result = export_bundle(model, arch, space, student_dir, {}, profile, workdir / "bundles",
                           options, data)
    m, met = result.manifest.doc, result.manifest.metrics
    shape = (1, 1, arch.resolution, arch.resolution)
    eager = eager_latency_ms(model, shape)
    fp32 = ort_latency_ms(result.path / "model.onnx", shape)
    presets = {}
    for name, p in met["int8_presets"].items():
        presets[name] = {"int8_top1": p["int8_top1"], "drop_points": p["drop_points"],
                         "int8_latency_ms": p["latency_ms"]["p50_ms"],
                         "int8_over_fp32": p["latency_ms"]["p50_ms"] / met["host_latency_ms"]["fp32"]["p50_ms"],
                         "top1_agreement": p["parity"]["top1_agreement"],
                         "quantize_s": p["quantize_s"], "gate_1pt_passed": p["drop_points"] <= 1.0}
    return {"arch": arch.summary(), "params": sum(t.numel() for t in model.parameters()),
            "train_s": round(train_s, 1), "fp32_top1": met["fp32_top1"],
            "eager_ms": eager, "ort_fp32_ms": fp32, "ort_over_eager": fp32 / eager,
            "int8_presets": presets, "chosen_preset": met["int8_preset"],
            "parity_fp32": met["parity"]["onnxruntime_fp32"],
            "export_wall_s": round(result.seconds, 2),
            "onnx_export_s": m["export"]["export_s"],
            "recommended_precision": m["recommended_precision"],
            "recommendation_reason": m["recommendation_reason"]}


def table(rows: list[dict]) -> str:
    """Markdown, one row per student; INT8 columns give ``performance / mixed`` presets."""
    head = ("| student | params | fp32 top-1 | eager ms | ORT fp32 ms | ORT/eager | "
            "int8 top-1 perf / mixed | drop pts perf / mixed | int8/fp32 latency perf / mixed | "
            "fp32 parity max diff | export s |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        p = [r["int8_presets"][k] for k in ("performance", "mixed") if k in r["int8_presets"]]
        both = lambda key, fmt: " / ".join(format(q[key], fmt) for q in p)  # noqa: E731
        lines.append(
            f"| `{r['arch'].replace('|', '/')}` | {r['params']} | {r['fp32_top1']:.2f} | "
            f"{r['eager_ms']:.3f} | {r['ort_fp32_ms']:.3f} | {r['ort_over_eager']:.2f} | "
            f"{both('int8_top1', '.2f')} | {both('drop_points', '+.2f')} | "
            f"{both('int8_over_fp32', '.2f')} | {r['parity_fp32']['max_abs_diff']:.1e} | "
            f"{r['export_wall_s']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 students, shorter training")
    ap.add_argument("--device", default="x86-laptop", help="CPU profile for the bundles")
    ap.add_argument("--out", type=Path, default=RESULTS / "export_bench.json")
    ap.add_argument("--table", type=Path, help="only print the table of an existing results JSON")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())["students"]))
        return 0
    args.students, args.train_images, args.epochs, args.eval_images = (
        (3, 6000, 1, 2000) if args.quick else (5, 20000, 2, None))

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.data.sources import load_fashion_mnist
    from gtn_deploy.export.data import load_export_data, normalise
    from gtn_deploy.io_utils import atomic_write_json, atomic_write_text
    from gtn_deploy.profiles import load_profile

    space, profile = get_space("fashion-mnist"), load_profile(args.device)
    raw = load_fashion_mnist(None)["train"]
    pick = np.random.default_rng(0).permutation(len(raw.images))[:args.train_images]
    train = (normalise(raw.images[pick], space.task.mean, space.task.std), raw.labels[pick])
    data = load_export_data(space.task, None, 300, args.eval_images, seed=1)
    archs = [space.min_arch()] + [space.sample(random.Random(s)) for s in range(1, args.students)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        for i, arch in enumerate(archs):
            rows.append(bench_student(i, arch, space, train, data, profile, args, Path(tmp)))
            print(f"[{i + 1}/{len(archs)}] {arch.summary()} done", file=sys.stderr)
    doc = {"benchmark": "export", "mode": "quick" if args.quick else "full",
           "device_profile": profile.id, "host": {"machine": platform.machine(),
                                                  "processor": _cpu_model(), "threads": 1},
           "train_images": args.train_images, "epochs": args.epochs,
           "eval_images": len(data.eval_images), "calib_images": 300, "students": rows}
    atomic_write_json(args.out, doc)
    text = table(rows)
    atomic_write_text(args.out.with_suffix(".md"), f"Export benchmark ({doc['mode']}, "
                      f"{doc['host']['processor']}, 1 thread, {doc['eval_images']} test images)"
                      f"\n\n{text}\n")
    print(text)
    print(f"\nwritten {args.out}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
