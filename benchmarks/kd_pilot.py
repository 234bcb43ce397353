"""Go/no-go pilot: is there a regime where the teacher is clearly stronger than its students
and vanilla KD beats cross-entropy? (issue 11: find the regime before comparing methods.)

    python benchmarks/kd_pilot.py            # all 54,000 training images (~45 min, 1 thread)
    python benchmarks/kd_pilot.py --quick    # 6,000 images, 2 seeds: a smoke run

One vanilla teacher per seed (resnet20, CE, no augmentation), then small students from the
bottom of the fashion-mnist space trained for ``--kd-epochs`` with CE and with KD at a few
(alpha, T) settings, each seed with its own teacher and its own training order. KD reads the
teacher's logits from a table computed once (no augmentation, so they are exact). alpha and
T are chosen on the validation split; the test split (all 10,000 images) only reports.

Go means: teacher top-1 >= CE students' mean + 4 points, and the validation-chosen KD setting
beats CE by >= 1 point on the students' average.
Outputs: benchmarks/results/kd_pilot[_quick].{json,md}, rewritten after every run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    elapsed_log,
    markdown_table,
    mean_std,
    settings_key,
    write_results,
)

KD_SETTINGS = ((0.9, 4.0), (0.5, 4.0), (0.9, 2.0))  # (alpha, T)
STUDENTS = {"min": "smallest subnet", "d2-k3-e3": "depth 2, kernel 3, expand 3"}
FULL = dict(seeds=3, limit_train=0, teacher="resnet20", teacher_epochs=3, kd_epochs=1,
            batch_size=128, lr=0.05)
QUICK = dict(seeds=2, limit_train=6000, teacher="resnet20", teacher_epochs=3, kd_epochs=1,
             batch_size=128, lr=0.05)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work-dir", default="/tmp/gtn_kd_pilot")
    ap.add_argument("--threads", type=int, default=1)
    for key, value in FULL.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    args = ap.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.name = "kd_pilot_quick" if args.quick else "kd_pilot"
    return args


def students(space) -> dict:
    from gtn_deploy.spaces.mbconv import ArchConfig

    d2 = ArchConfig.from_stage_blocks([[(3, 3)] * 2] * space.num_stages,
                                      max(space.resolutions), space.width_mult)
    return {"min": space.min_arch(), "d2-k3-e3": space.validate(d2)}


def train_teacher(args, data, seed: int, log) -> Path:
    from gtn_deploy.train.config import TrainConfig
    from gtn_deploy.train.trainer import TeacherTrainer

    cfg = TrainConfig(method="vanilla", task="fashion-mnist", teacher=args.teacher,
                      epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=seed, limit_train=args.limit_train or None, augment=False,
                      progress=False)
    run = Path(args.work_dir) / "teachers" / f"vanilla-s{seed}-{settings_key(cfg.to_dict())}"
    if not (run / "summary.json").is_file():
        t0 = time.perf_counter()
        TeacherTrainer(cfg, run, resume=True, device="cpu", data=data).run()
        log(f"teacher seed {seed}: {time.perf_counter() - t0:.0f} s")
    return run


def train_student(args, data, arch, seed: int, teacher, alpha: float, temperature: float):
    from gtn_deploy.train.distill import KDConfig, distill_student

    cfg = KDConfig(task="fashion-mnist", epochs=args.kd_epochs, seed=seed,
                   batch_size=args.batch_size, lr=args.lr, alpha=alpha,
                   temperature=temperature, limit_train=args.limit_train or None,
                   augment=False, progress=False)
    key = settings_key({"kd": cfg.to_dict(), "arch": arch.to_dict(),
                        "teacher": teacher.sha256 if teacher else None})
    out = Path(args.work_dir) / "students" / key
    return distill_student(cfg, arch, out, teacher, resume=True, device="cpu", data=data)


def method_name(alpha: float, temperature: float) -> str:
    return f"kd a{alpha:g} T{temperature:g}"


def summarise(rows: list[dict], teacher_rows: list[dict]) -> tuple[dict, str]:
    methods = ["ce"] + [method_name(a, t) for a, t in KD_SETTINGS]
    by = {}
    for r in rows:
        by.setdefault((r["student"], r["method"]), []).append(r)

    def mean_of(method, split):
        vals = [statistics.mean(r[split] for r in by[(s, method)]) for s in STUDENTS
                if (s, method) in by]
        return statistics.mean(vals) if len(vals) == len(STUDENTS) else None

    table = [[s, STUDENTS[s]] + [mean_std([r["test_top1"] for r in by.get((s, m), [])])
                                 for m in methods] for s in STUDENTS]
    val_means = {m: mean_of(m, "val_top1") for m in methods}
    kd_val = {m: v for m, v in val_means.items() if m != "ce" and v is not None}
    chosen = max(kd_val, key=kd_val.get) if kd_val else None
    teacher_test = [t["test_top1"] for t in teacher_rows]
    ce_test, kd_test = mean_of("ce", "test_top1"), mean_of(chosen, "test_top1") if chosen else None
    verdict = {"teacher_test_top1": statistics.mean(teacher_test) if teacher_test else None,
               "ce_test_top1": ce_test, "kd_chosen_on_val": chosen,
               "kd_test_top1": kd_test, "val_means": val_means}
    if ce_test is not None and kd_test is not None and teacher_test:
        verdict["teacher_gap"] = verdict["teacher_test_top1"] - ce_test
        verdict["kd_gain"] = kd_test - ce_test
        verdict["go"] = verdict["teacher_gap"] >= 4.0 and verdict["kd_gain"] >= 1.0
    md = [markdown_table(["student", "arch"] + [f"{m} (test)" for m in methods], table), "",
          markdown_table(["teacher seed", "val top-1", "test top-1", "train s"],
                         [[t["seed"], f"{t['val_top1']:.2f}", f"{t['test_top1']:.2f}",
                           f"{t['train_time_s']:.0f}"] for t in teacher_rows]), ""]
    if "go" in verdict:
        md.append(f"Teacher {verdict['teacher_test_top1']:.2f} vs CE students "
                  f"{ce_test:.2f}: gap {verdict['teacher_gap']:+.2f} (go needs >= +4). "
                  f"KD setting chosen on val: {chosen}; its test gain over CE "
                  f"{verdict['kd_gain']:+.2f} (go needs >= +1). **{'GO' if verdict['go'] else 'NO GO'}**.")
    return verdict, "\n".join(md)


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.data import load_space_data
    from gtn_deploy.io_utils import atomic_write_text
    from gtn_deploy.train.kd_teacher import open_teacher

    start = time.perf_counter()
    log = elapsed_log(start)

    space = get_space("fashion-mnist")
    data = load_space_data(space, None, limit_train=args.limit_train or None)
    archs = students(space)
    rows, teacher_rows = [], []

    def report() -> None:
        verdict, md = summarise(rows, teacher_rows)
        setting = {k: getattr(args, k) for k in FULL}
        header = (f"# KD pilot: Fashion-MNIST, {len(data.train)} training images, "
                  f"{len(data.test)} test images\n\nSetting: {setting}, no augmentation, "
                  f"students from scratch. Wall {(time.perf_counter() - start) / 60:.1f} min.\n")
        atomic_write_text(RESULTS / f"{args.name}.md", header + "\n" + md + "\n")
        write_results(args.name, {"setting": setting, "data": data.summary(),
                                  "students": {k: a.to_dict() for k, a in archs.items()},
                                  "rows": rows, "teachers": teacher_rows, "verdict": verdict,
                                  "wall_time_s": round(time.perf_counter() - start, 1)})

    for seed in range(args.seeds):
        teacher = open_teacher(train_teacher(args, data, seed, log))
        teacher_rows.append({"seed": seed, **teacher.metrics,
                             "train_time_s": _teacher_time(teacher.run_dir)})
        for sid, arch in archs.items():
            for method, alpha, temp in [("ce", 0.0, 4.0)] + [
                    (method_name(a, t), a, t) for a, t in KD_SETTINGS]:
                summary = train_student(args, data, arch, seed,
                                        None if method == "ce" else teacher, alpha, temp)
                rows.append({"seed": seed, "student": sid, "method": method,
                             **summary["metrics"], "train_time_s": summary["train_time_s"]})
                log(f"seed {seed} {sid} {method}: val {summary['metrics']['val_top1']:.2f} "
                    f"test {summary['metrics']['test_top1']:.2f} "
                    f"({summary['train_time_s']:.0f} s)")
                report()
    report()
    print((RESULTS / f"{args.name}.md").read_text())


def _teacher_time(run: Path) -> float:
    import json

    return json.loads((run / "summary.json").read_text())["train_time_s"]


if __name__ == "__main__":
    main()
