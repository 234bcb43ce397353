"""Teacher-training cost and a short real run: GTN vs vanilla (vs SFTN step time).

1. Step time at the same batch and teacher on this CPU, all channels_last, paired (every
   variant steps on the same batch in turn): vanilla (teacher CE), sftn (one fixed student,
   one branch per step), gtn (learned sampler, 1 path, one branch per step, branches on half
   the batch: the defaults), gtn on the whole batch, and the old default gtn (2 paths, all
   branches); forward + backward + SGD step + sampler
   update; median, p90, images/s, and the median per-round ratio to vanilla (goal <= 2.0).
2. A short Fashion-MNIST run of vanilla and gtn teachers through the real trainer:
   teacher val/test top-1, wall time, loss curves (PNG).

    .venv/bin/python benchmarks/teacher_bench.py [--quick] [--threads N]

Writes benchmarks/results/teacher_bench.json and teacher_bench_curves.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gtn_deploy.spaces.mbconv import get_space  # noqa: E402
from gtn_deploy.data import BatchPlan, load_space_data, normalize, train_batches  # noqa: E402
from gtn_deploy.io_utils import atomic_write_json  # noqa: E402
from gtn_deploy.models import create_teacher  # noqa: E402
from gtn_deploy.stats import percentile  # noqa: E402
from gtn_deploy.supernet import Supernet  # noqa: E402
from gtn_deploy.train.config import TrainConfig  # noqa: E402
from gtn_deploy.train.gtn import LossWeights, TeacherObjective  # noqa: E402
from gtn_deploy.train.sampler import ArchSampler  # noqa: E402
from gtn_deploy.train.trainer import TeacherTrainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


# Step variants timed side by side: (method, paths, branches). The last is the old default.
VARIANTS = {"vanilla": ("vanilla", 0, None, 1.0), "sftn": ("sftn", 1, "one", 0.5),
            "gtn": ("gtn", 1, "one", 0.5), "gtn-full-batch": ("gtn", 1, "one", 1.0),
            "gtn-2paths-all-branches": ("gtn", 2, "all", 1.0)}


class StepRunner:
    """One training step of a method (forward, backward, SGD, sampler update), channels_last
    as the trainer runs it."""

    def __init__(self, method: str, paths: int, branches, branch_batch: float, space,
                 teacher: str):
        torch.manual_seed(0)
        net = create_teacher(teacher, space.task)
        supernet = Supernet(space) if method != "vanilla" else None
        self.objective = TeacherObjective(method, net, supernet, max(space.resolutions),
                                          LossWeights(branch_batch=branch_batch)).train()
        self.objective.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.objective.parameters(), lr=0.05, momentum=0.9,
                                   nesterov=True, weight_decay=5e-4)
        self.sampler, self.paths, self.branches, self.step = None, paths, branches, 0
        if method == "gtn":
            self.sampler = ArchSampler(space, "learned", seed=0)
        elif method == "sftn":
            self.sampler = ArchSampler(space, "fixed",
                                       [space.sample(__import__("random").Random(1))])

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        t0 = time.perf_counter()
        x = x.contiguous(memory_format=torch.channels_last)
        archs = self.sampler.sample(self.paths) if self.sampler else []
        which = None
        if self.branches == "one":
            which = [self.step % self.objective.branches.num_branches]
        loss, stats = self.objective(x, y, archs, which=which)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.sampler:
            self.sampler.update(archs, stats[3:].tolist())
        self.step += 1
        return time.perf_counter() - t0


def time_steps(data, space, teacher: str, batch: int, warmup: int, iters: int) -> dict:
    """Every variant steps on the same batch in turn (paired), so load drifts hit them
    alike; the ratio to vanilla is the median of the per-round ratios."""
    runners = {name: StepRunner(*variant, space, teacher) for name, variant in VARIANTS.items()}
    times = {name: [] for name in runners}
    plan = BatchPlan(len(data.train), batch)
    batches = train_batches(data.train, space.task, plan, seed=0, epoch=0)
    for i in range(warmup + iters):
        _, images, labels = next(batches)
        x = normalize(images, space.task)
        for name, run in runners.items():
            elapsed = run(x, labels)
            if i >= warmup:
                times[name].append(elapsed)
    out = {}
    for name, values in times.items():
        ratios = sorted(a / b for a, b in zip(values, times["vanilla"]))
        ordered = sorted(values)
        median = statistics.median(ordered)
        method, paths, branches, branch_batch = VARIANTS[name]
        out[name] = {"method": method, "paths": paths, "branches": branches,
                     "branch_batch": branch_batch,
                     "median_step_ms": round(1000 * median, 2),
                     "p90_step_ms": round(1000 * percentile(ordered, 90), 2),
                     "images_per_s": round(batch / median, 1), "timed_steps": iters,
                     "ratio_to_vanilla": round(statistics.median(ratios), 2)}
    return out


def short_run(method: str, args, data, workdir: Path) -> dict:
    cfg = TrainConfig(method=method, task="fashion-mnist", teacher=args.teacher,
                      epochs=args.epochs, sampler="learned", paths=args.paths,
                      batch_size=args.batch_size, lr=args.lr, seed=0,
                      limit_train=args.limit_train, limit_val=args.limit_val,
                      log_every=5, progress=True)
    out = workdir / method
    t0 = time.perf_counter()
    summary = TeacherTrainer(cfg, out, device="cpu", data=data).run()
    wall = time.perf_counter() - t0
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    return {"method": method, "wall_time_s": round(wall, 1),
            "train_time_s": summary["train_time_s"], **summary["teacher_metrics"],
            "supernet_val": summary["supernet_val"],
            "steps": [{k: r[k] for k in ("global_step", "loss", "teacher_ce", "train_acc")}
                      for r in records if r["event"] == "step"],
            "epochs": [{k: r.get(k) for k in ("epoch", "loss", "teacher_ce", "val_top1",
                                              "kl_a", "time_s")}
                       for r in records if r["event"] == "epoch"]}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        steps = [s["global_step"] for s in run["steps"]]
        axes[0].plot(steps, [s["teacher_ce"] for s in run["steps"]],
                     label=f"{run['method']}: teacher CE")
        if run["method"] != "vanilla":
            axes[0].plot(steps, [s["loss"] for s in run["steps"]], "--",
                         label=f"{run['method']}: total (CE + branches)")
        epochs = [e["epoch"] + 1 for e in run["epochs"]]
        axes[1].plot(epochs, [e["val_top1"] for e in run["epochs"]], "o-", label=run["method"])
    axes[0].set(xlabel="step", ylabel="training loss (epoch running mean)",
                title="Fashion-MNIST teacher training")
    axes[1].set(xlabel="epoch", ylabel="teacher val top-1 (%)", title="validation")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few minutes on a laptop CPU")
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    args = p.parse_args()
    quick = args.quick
    args.batch_size, args.paths, args.lr = 128, 1, 0.05
    args.epochs = 3 if quick else 8
    args.limit_train = 3000 if quick else 10000
    args.limit_val = 2000 if quick else None
    args.warmup, args.iters = (3, 10) if quick else (5, 30)
    return args


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    space = get_space("fashion-mnist")
    data = load_space_data(space, limit_train=args.limit_train, limit_val=args.limit_val)
    step = time_steps(data, space, args.teacher, args.batch_size, args.warmup, args.iters)
    print(json.dumps(step, indent=1), file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="teacher_bench_"))
    try:
        runs = [short_run(m, args, data, workdir) for m in ("vanilla", "gtn")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(runs, RESULTS / "teacher_bench_curves.png")
    result = {
        "schema_version": 1, "kind": "gtn_deploy.bench.teacher", "quick": args.quick,
        "conditions": {"cpu": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                       "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                       "torch": torch.__version__, "python": platform.python_version()},
        "setup": {"task": "fashion-mnist", "teacher": args.teacher,
                  "batch_size": args.batch_size, "gtn_paths": args.paths,
                  "epochs": args.epochs, "limit_train": args.limit_train,
                  "val_images": len(data.val), "test_images": len(data.test)},
        "step_time": step,
        "runs": [{k: v for k, v in r.items() if k != "steps"} for r in runs],
        "curves_png": "benchmarks/results/teacher_bench_curves.png",
    }
    atomic_write_json(RESULTS / "teacher_bench.json", result)
    print(json.dumps({"step_time": step, "runs": result["runs"]}, indent=1))


if __name__ == "__main__":
    main()
