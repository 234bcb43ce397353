"""The GTN claim, measured: one generic teacher vs. the baselines on the same students, in a
regime where KD beats CE (issue 11; the regime comes from benchmarks/kd_pilot.py).

    python benchmarks/kd_pool.py --quick            # smoke run: 3,000 images, 1 seed
    python benchmarks/kd_pool.py                    # the table: 3 seeds (hours, 1 thread)
    python benchmarks/kd_pool.py --seed-list 1,2    # a second process takes other seeds
    python benchmarks/kd_pool.py --report-only --prior benchmarks/results/kd_pool.json
                                                    # the table from the cache + earlier rows

Regime (the pilot's): Fashion-MNIST without augmentation, resnet20 teachers trained for a few
epochs, students from the small end of the space (39k-134k params) trained for one epoch
from scratch, KD at the (alpha, T) the pilot chose on the validation split; the test top-1
is on the whole 10,000-image test set.

Pool (as in the paper: NAS-derived and random students): for each of three devices the best
candidate of ``plan`` under budgets set by the pilot's reference student (d2 k3 e3, 88k
params): its predicted latency on that device and 1.25x its model memory, so that the planned
students stay within the regime's sizes; plus three random students of those sizes that the
teachers are never told about.

Teacher methods (each one teacher per seed, except sftn: one per student):
``vanilla`` (CE), ``gtn`` (learned sampler pulled toward the planned students), the sampler
ablations ``gtn-uniform`` and ``gtn-pool``, the branch-0 ablation ``gtn-no-branch0``, and
``sftn`` for the first ``--sftn-students`` students; ``ce`` trains students without a teacher;
``dkd`` distils the vanilla teacher with Decoupled KD (``--dkd-beta``) instead of classic KD.
vanilla, gtn, sftn, dkd and ce run on every seed; the ablations on the first
``--ablation-seeds``.
Extra GTN variants (free choices of our reconstruction) are named in VARIANTS and selected
with ``--methods``; choose among them on the validation column, never on test.

Caching: a teacher's folder name is a hash of its whole TrainConfig, a student's of its
KDConfig, arch and teacher weights' sha256: a changed setting never reuses a stale run, and a
rerun continues where it stopped. Results (rewritten after every run, from every cached run
of the requested seeds, so two processes can share the work): kd_pool[_quick].{json,md,png}.
``--prior FILE`` adds the rows of an earlier results file of the same setting and pool where
the cache has no run (the cache lives in /tmp and does not outlive a machine); a run in both
is reported as a reproducibility check.
"""

from __future__ import annotations

import argparse
import json
import random
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

DEVICES = ("raspberry-pi-4", "x86-laptop", "jetson-nano")
MIN_PARAMS, MAX_PARAMS = 38_000, 134_000  # the pilot's student sizes
# Teacher variants: TrainConfig fields on top of the shared setting. "pool" = the planned
# students are passed to the sampler (its prior, or its only choices for sampler=pool).
VARIANTS = {
    "vanilla": dict(method="vanilla"),
    "gtn": dict(method="gtn", sampler="learned", pool=True),
    "gtn-uniform": dict(method="gtn", sampler="uniform"),
    "gtn-pool": dict(method="gtn", sampler="pool", pool=True),
    "gtn-no-branch0": dict(method="gtn", sampler="learned", pool=True, branch0=False),
    # the conditioning as GTN_METHOD.md writes it: KL into the teacher, full feature gradient
    "gtn-as-written": dict(method="gtn", sampler="learned", pool=True, kl_detach=False,
                           teacher_grad=1.0),
    "gtn-all-branches": dict(method="gtn", sampler="learned", pool=True, branches="all"),
}
DEFAULT_METHODS = ("ce,vanilla,dkd,sftn,gtn,gtn-uniform,gtn-pool,gtn-no-branch0,"
                   "gtn-as-written")
STUDENT_METHODS = ("ce", "dkd")  # no teacher of their own: ce none, dkd the vanilla one
FULL = dict(seeds=3, teacher="resnet20", teacher_epochs=3, kd_epochs=1, limit_train=20000,
            batch_size=128, lr=0.05, alpha=0.9, temperature=4.0, sftn_students=2,
            ablation_seeds=1, dkd_beta=8.0)
QUICK = dict(seeds=1, teacher="resnet20", teacher_epochs=1, kd_epochs=1, limit_train=3000,
             batch_size=128, lr=0.05, alpha=0.9, temperature=4.0, sftn_students=2,
             ablation_seeds=1, dkd_beta=8.0)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work-dir", default=None, help="cache of teachers and students")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=DEFAULT_METHODS,
                    help=f"comma list of ce, dkd, sftn and {', '.join(VARIANTS)}")
    ap.add_argument("--seed-list", default=None, help="seeds this process trains (default all)")
    ap.add_argument("--name", default=None, help="results file stem")
    ap.add_argument("--prior", type=Path, default=None,
                    help="an earlier results JSON of the same setting: its rows fill the gaps")
    ap.add_argument("--report-only", action="store_true", help="train nothing; write the table")
    for key, value in FULL.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    args = ap.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods
               if m not in VARIANTS and m not in STUDENT_METHODS + ("sftn",)]
    if unknown or "vanilla" not in args.methods:
        ap.error(f"--methods: unknown {unknown} (vanilla is required: gains are against it)")
    args.name = args.name or ("kd_pool_quick" if args.quick else "kd_pool")
    args.work_dir = Path(args.work_dir or "/tmp/gtn_kd_pool")
    seeds = range(args.seeds) if args.seed_list is None else \
        [int(s) for s in args.seed_list.split(",")]
    args.train_seeds = [] if args.report_only else list(seeds)
    return args


# -- the pool ----------------------------------------------------------------------------------
def reference_student(space):
    from gtn_deploy.spaces.mbconv import ArchConfig

    return space.validate(ArchConfig.from_stage_blocks(
        [[(3, 3)] * 2] * space.num_stages, max(space.resolutions), space.width_mult))


def student_pool(space) -> list[dict]:
    """Three planned students (one per device, distinct) and three random ones."""
    from gtn_deploy.spaces.mbconv import ArchConfig
    from gtn_deploy.cost.analytic import network_cost
    from gtn_deploy.cost.latency import predict_latency, predict_memory_mb
    from gtn_deploy.profiles import load_profile
    from gtn_deploy.search.planner import PlanRequest, plan_device

    def params(arch) -> int:
        return network_cost(space, arch).params

    pool, seen, ref = [], set(), reference_student(space)
    for device in DEVICES:
        profile = load_profile(device)
        precision = profile.preferred_precision
        # the reference student's predicted latency and 1.25x its model memory on this device
        req = PlanRequest.for_device(
            profile, space, latency_ms=predict_latency(space, ref, profile, precision).latency_ms,
            memory_mb=1.25 * predict_memory_mb(space, ref, precision), top_k=30)
        _, entry = plan_device(req)
        for cand in entry["candidates"]:
            arch = ArchConfig.from_dict(cand["arch"])
            if arch not in seen and MIN_PARAMS <= params(arch) <= MAX_PARAMS:
                seen.add(arch)
                pool.append({"id": f"plan:{device}", "kind": "planned", "arch": arch,
                             "budget_ms": round(req.latency_ms, 4),
                             "memory_budget_mb": round(req.memory_mb, 4),
                             "params": params(arch)})
                break
    rng = random.Random(2024)
    while sum(s["kind"] == "random" for s in pool) < 3:
        arch = space.sample(rng)
        if arch not in seen and MIN_PARAMS <= params(arch) <= MAX_PARAMS:
            seen.add(arch)
            pool.append({"id": f"random{sum(s['kind'] == 'random' for s in pool)}",
                         "kind": "random", "arch": arch, "params": params(arch)})
    for s in pool:
        s["mflops"] = round(network_cost(space, s["arch"]).mflops, 2)
    return pool


# -- training (cached) -------------------------------------------------------------------------
def sftn_index(name: str) -> int | None:
    """The pool index of an ``sftn:K`` teacher (its one student), else None."""
    return int(name.split(":")[1]) if name.startswith("sftn:") else None


def teacher_config(args, space, name: str, seed: int, pool):
    from gtn_deploy.train.config import TrainConfig

    job = dict(VARIANTS.get(name, {}))
    if sftn_index(name) is not None:
        job = dict(method="sftn", student=pool[sftn_index(name)]["arch"].to_dict())
    planned = tuple(s["arch"].to_dict() for s in pool if s["kind"] == "planned")
    job["pool"] = planned if job.pop("pool", False) else ()
    return TrainConfig(task=space.task.name, teacher=args.teacher, epochs=args.teacher_epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=seed,
                       limit_train=args.limit_train or None, augment=False, progress=False,
                       **job)


def teacher_dir(args, cfg) -> Path:
    """A teacher's cached run folder, named by a hash of its whole config."""
    return args.work_dir / "teachers" / f"{cfg.method}-s{cfg.seed}-{settings_key(cfg.to_dict())}"


def train_teacher(args, cfg, data, log) -> Path:
    from gtn_deploy.train.trainer import TeacherTrainer

    run = teacher_dir(args, cfg)
    if not (run / "summary.json").is_file():
        t0 = time.perf_counter()
        TeacherTrainer(cfg, run, resume=True, device="cpu", data=data).run()
        log(f"teacher {run.name}: {time.perf_counter() - t0:.0f} s")
    return run


def kd_config(args, space, seed: int, method: str):
    """A student's KDConfig: ``method`` ce (no teacher), dkd, or any teacher's name (KD)."""
    from gtn_deploy.train.distill import KDConfig

    return KDConfig(task=space.task.name, epochs=args.kd_epochs, seed=seed,
                    batch_size=args.batch_size, lr=args.lr,
                    alpha=0.0 if method == "ce" else args.alpha,
                    kd_loss="dkd" if method == "dkd" else "kd", dkd_beta=args.dkd_beta,
                    temperature=args.temperature, limit_train=args.limit_train or None,
                    augment=False, progress=False)


def student_dir(args, cfg, arch, teacher_sha: str | None) -> Path:
    kd = cfg.to_dict()
    if kd["kd_loss"] == "kd":  # classic KD keeps the key it had before the loss had a name
        kd.pop("kd_loss"), kd.pop("dkd_beta")
    key = settings_key({"kd": kd, "arch": arch.to_dict(), "teacher": teacher_sha})
    return args.work_dir / "students" / key


MAIN_TEACHERS = ("vanilla", "gtn")  # every seed; the other variants are ablations


def teacher_names(args, pool, seed: int) -> list[str]:
    """Main teachers first (vanilla, gtn, sftn), then the ablations of this seed."""
    names = [m for m in MAIN_TEACHERS if m in args.methods]
    if "sftn" in args.methods:
        names += [f"sftn:{i}" for i in range(min(args.sftn_students, len(pool)))]
    if seed < args.ablation_seeds:
        names += [m for m in args.methods if m in VARIANTS and m not in MAIN_TEACHERS]
    return names


def run_seed(args, space, data, pool, seed: int, log, report) -> None:
    from gtn_deploy.train.kd_teacher import open_teacher

    # each teacher's students right after it, so the main rows fill in first
    jobs = (["ce"] if "ce" in args.methods else []) + teacher_names(args, pool, seed)
    for name in jobs:
        students = [("ce", i, None) for i in range(len(pool))] if name == "ce" else []
        if name != "ce":
            cfg = teacher_config(args, space, name, seed, pool)
            source = open_teacher(train_teacher(args, cfg, data, log))
            report()
            index = sftn_index(name)
            targets = [index] if index is not None else range(len(pool))
            students = [(name, i, source) for i in targets]
            if name == "vanilla" and "dkd" in args.methods:
                students += [("dkd", i, source) for i in targets]
        distil_students(args, space, data, pool, seed, students, log, report)


def distil_students(args, space, data, pool, seed, students, log, report) -> None:
    from gtn_deploy.train.distill import distill_student

    for name, i, source in students:
        cfg = kd_config(args, space, seed, name)
        out = student_dir(args, cfg, pool[i]["arch"], source.sha256 if source else None)
        if not (out / "summary.json").is_file():
            summary = distill_student(cfg, pool[i]["arch"], out, source, resume=True,
                                      device="cpu", data=data,
                                      label={"student": pool[i]["id"], "method": name})
            log(f"seed {seed} {pool[i]['id']} {name}: test "
                f"{summary['metrics']['test_top1']:.2f} ({summary['train_time_s']:.0f} s)")
            report()


# -- collecting and summarising ----------------------------------------------------------------
def collect(args, space, pool) -> tuple[list[dict], list[dict]]:
    """Every finished teacher and student run of the requested seeds, from the cache."""
    rows, teachers = [], []
    for seed in range(args.seeds):
        shas = {}
        for name in teacher_names(args, pool, seed):
            run = teacher_dir(args, teacher_config(args, space, name, seed, pool))
            if not (run / "summary.json").is_file():
                continue
            doc = json.loads((run / "summary.json").read_text())
            sampler = run / "sampler.json"
            teachers.append({"seed": seed, "teacher": name, "train_time_s": doc["train_time_s"],
                             **doc["teacher_metrics"],
                             "sampler_entropy": json.loads(sampler.read_text())["entropy"]
                             if sampler.is_file() else None})
            from gtn_deploy.train.kd_teacher import open_teacher

            shas[name] = (open_teacher(run).sha256, sftn_index(name))
        if "dkd" in args.methods and "vanilla" in shas:
            shas["dkd"] = shas["vanilla"]
        for method in ["ce"] + list(shas):
            if method == "ce" and "ce" not in args.methods:
                continue
            sha, index = shas.get(method, (None, None))
            for i, s in enumerate(pool):
                if index is not None and i != index:
                    continue
                out = student_dir(args, kd_config(args, space, seed, method),
                                  s["arch"], sha) / "summary.json"
                if out.is_file():
                    doc = json.loads(out.read_text())
                    rows.append({"seed": seed, "student": s["id"],
                                 "method": method.split(":")[0], **doc["metrics"],
                                 "train_time_s": doc["train_time_s"]})
    return rows, teachers


def merge_prior(prior: dict | None, setting: dict, pool, rows, teachers):
    """Fill the gaps of this cache with an earlier results file's rows of the same setting and
    pool. Returns the merged rows and teachers, and the runs found in both (cached test top-1
    against the earlier one): a rerun on another machine checks that the numbers reproduce."""
    if prior is None:
        return rows, teachers, []
    # settings added since the earlier run (e.g. dkd_beta) only shape methods it did not have
    same = all(setting.get(k) == v for k, v in prior["setting"].items() if k != "methods")
    if not same or [p["summary"] for p in prior["pool"]] != [s["arch"].summary() for s in pool]:
        raise SystemExit("error: --prior was run with another setting or pool; not merged")
    have = {(r["seed"], r["student"], r["method"]): r for r in rows}
    checks = [{"seed": r["seed"], "student": r["student"], "method": r["method"],
               "cached": have[key]["test_top1"], "prior": r["test_top1"]}
              for r in prior["rows"]
              if (key := (r["seed"], r["student"], r["method"])) in have]
    rows = rows + [{**r, "from": "prior"} for r in prior["rows"]
                   if (r["seed"], r["student"], r["method"]) not in have]
    known = {(t["seed"], t["teacher"]) for t in teachers}
    teachers = teachers + [{**t, "from": "prior"} for t in prior["teachers"]
                           if (t["seed"], t["teacher"]) not in known]
    return rows, teachers, checks


def summarise(pool, rows, methods, seeds) -> tuple[dict, str]:
    top = {(r["student"], r["method"], r["seed"]): r for r in rows}
    ids = [s["id"] for s in pool]
    cols = [m for m in methods if any(r["method"] == m for r in rows)]

    def vals(i, m, split="test_top1"):
        return [top[(i, m, k)][split] for k in seeds if (i, m, k) in top]

    table = [[s["id"], s["arch"].summary(), f"{s['params'] / 1e3:.0f}k"] +
             [mean_std(vals(s["id"], m)) for m in cols] for s in pool]
    per_seed, per_seed_val = {}, {}
    for m in cols:  # pool average per seed, over the students that every seed has
        complete = [k for k in seeds if all((i, m, k) in top for i in ids)]
        per_seed[m] = {k: statistics.mean(top[(i, m, k)]["test_top1"] for i in ids)
                       for k in complete}
        per_seed_val[m] = {k: statistics.mean(top[(i, m, k)]["val_top1"] for i in ids)
                           for k in complete}
    table.append(["**pool average** (test)", "", ""] +
                 [mean_std(list(per_seed[m].values())) for m in cols])
    table.append(["pool average (val)", "", ""] +
                 [mean_std(list(per_seed_val[m].values())) for m in cols])
    md = [markdown_table(["student", "arch", "params"] + cols, table), ""]
    comparisons = {}
    for m in cols:
        if m == "vanilla":
            continue
        both = [k for k in per_seed[m] if k in per_seed.get("vanilla", {})]
        gains = [per_seed[m][k] - per_seed["vanilla"][k] for k in both]
        pairs = [top[(i, m, k)]["test_top1"] > top[(i, "vanilla", k)]["test_top1"]
                 for i in ids for k in seeds if (i, m, k) in top and (i, "vanilla", k) in top]
        if not pairs:
            continue
        comparisons[m] = {
            "seeds": len(gains), "pool_gain_mean": statistics.mean(gains) if gains else None,
            "pool_gain_std": statistics.stdev(gains) if len(gains) > 1 else 0.0,
            "win_rate_pairs": sum(pairs) / len(pairs), "pairs": len(pairs)}
    md.append(markdown_table(
        ["method vs vanilla KD", "pool gain, test (pts, mean ± std over seeds)",
         "win rate (student x seed pairs)"],
        [[m, "-" if c["pool_gain_mean"] is None else
          f"{c['pool_gain_mean']:+.2f} ± {c['pool_gain_std']:.2f} ({c['seeds']} seeds)",
          f"{c['win_rate_pairs']:.0%} of {c['pairs']}"] for m, c in comparisons.items()]))
    return {"per_seed_pool_test": per_seed, "per_seed_pool_val": per_seed_val,
            "comparisons": comparisons}, "\n".join(md)


def teacher_table(teachers) -> str:
    by = {}
    for t in teachers:
        by.setdefault(t["teacher"].split(":")[0], []).append(t)

    def col(ts, key):
        return mean_std([t[key] for t in ts if t.get(key) is not None])

    return markdown_table(
        ["teacher", "runs", "val top-1", "test top-1", "test logit std", "test entropy (nats)",
         "p(true class)", "train s (one)"],
        [[name, len(ts), col(ts, "val_top1"), col(ts, "test_top1"), col(ts, "test_logit_std"),
          col(ts, "test_entropy"), col(ts, "test_p_true"), col(ts, "train_time_s")]
         for name, ts in by.items()])


def cost_table(pool, rows, teachers) -> tuple[dict, str]:
    """Amortised cost for N students: GTN one teacher, SFTN one teacher per student."""
    n = len(pool)
    secs = {}
    for t in teachers:
        secs.setdefault(t["teacher"].split(":")[0], []).append(t["train_time_s"])
    kd = [r["train_time_s"] for r in rows if r["method"] != "ce"]
    if not kd or "vanilla" not in secs:
        return {}, ""
    kd_s = statistics.mean(kd)
    c = {m: statistics.mean(v) for m, v in secs.items()}
    out = {m: (n if m == "sftn" else 1) * c[m] + n * kd_s for m in c}
    table = [[m, n if m == "sftn" else 1, f"{c[m]:.0f}", f"{out[m]:.0f}",
              f"{out[m] / out['vanilla']:.2f}"] for m in c]
    md = markdown_table(["method", f"teachers for N={n}", "teacher training s (one, measured)",
                         f"total s for N={n} (+ {n} KD runs of {kd_s:.0f} s)",
                         "x vanilla"], table)
    return {"teacher_s": c, "kd_run_s": kd_s, "amortised_s": out}, md


def reused(rows, prior_path) -> str:
    n = sum(r.get("from") == "prior" for r in rows)
    return f" ({n} of them from the earlier results {prior_path})" if n else ""


def reproduced(checks) -> str:
    worst = max(abs(c["cached"] - c["prior"]) for c in checks)
    return (f"Reproducibility: {len(checks)} runs were trained again here and are also in the "
            f"earlier results; the largest test top-1 difference is {worst:.2f} points.\n\n"
            + markdown_table(["seed", "student", "method", "earlier", "here"],
                             [[c["seed"], c["student"], c["method"], c["prior"], c["cached"]]
                              for c in checks]))


def plot(pool, rows, methods, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [m for m in methods if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / max(1, len(cols))
    for j, method in enumerate(cols):
        xs, means, sds = [], [], []
        for i, s in enumerate(pool):
            v = [r["test_top1"] for r in rows if r["student"] == s["id"] and r["method"] == method]
            if v:
                xs.append(i + (j - len(cols) / 2 + 0.5) * width)
                means.append(statistics.mean(v))
                sds.append(statistics.stdev(v) if len(v) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=sds, label=method, capsize=2)
    ax.set_xticks(range(len(pool)), [s["id"] for s in pool], rotation=10)
    lo, hi = min(r["test_top1"] for r in rows), max(r["test_top1"] for r in rows)
    ax.set_ylim(max(0, lo - 2), min(100, hi + 1.5))
    ax.set_ylabel("test top-1 % (mean ± std over seeds)")
    ax.legend(ncol=len(cols), fontsize=8, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.data import load_space_data
    from gtn_deploy.io_utils import atomic_write_text

    start = time.perf_counter()
    log = elapsed_log(start)

    space = get_space("fashion-mnist")
    data = load_space_data(space, None, limit_train=args.limit_train or None)
    pool = student_pool(space)
    for s in pool:
        log(f"student {s['id']}: {s['arch'].summary()} ({s['params']} params, "
            f"{s['mflops']} MFLOPs)")
    setting = {k: getattr(args, k) for k in FULL} | {"methods": args.methods,
                                                     "augment": False}

    prior = json.loads(args.prior.read_text()) if args.prior else None

    def report() -> None:
        rows, teachers, checks = merge_prior(prior, setting, pool, *collect(args, space, pool))
        if not rows:
            return
        seeds = list(range(args.seeds))
        order = ["ce"] + [m for m in args.methods if m != "ce"]
        stats, md_main = summarise(pool, rows, order, seeds)
        costs, md_cost = cost_table(pool, rows, teachers)
        header = (f"# KD pool: Fashion-MNIST, {len(pool)} students, seeds {seeds}\n\n"
                  f"Setting: {setting}. {len(data.train)} training images, no augmentation; "
                  f"top-1 on {len(data.test)} test images. Rows so far: {len(rows)}"
                  f"{reused(rows, args.prior)}.\n")
        md = "\n\n".join([header, md_main, "Teachers:\n\n" + teacher_table(teachers),
                          "Cost (wall-clock on this machine):\n\n" + md_cost]
                         + ([reproduced(checks)] if checks else [])) + "\n"
        atomic_write_text(RESULTS / f"{args.name}.md", md)
        plot(pool, rows, order, RESULTS / f"{args.name}.png")
        write_results(args.name, {
            "setting": setting, "data": data.summary(),
            "pool": [{**s, "arch": s["arch"].to_dict(), "summary": s["arch"].summary()}
                     for s in pool],
            "rows": rows, "teachers": teachers, **stats, "cost": costs,
            "reproduced": checks})

    for seed in args.train_seeds:
        run_seed(args, space, data, pool, seed, log, report)
    report()
    log("done")
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
