"""Does the generic teacher teach better than a vanilla one? An experiment with the power to say.

    python benchmarks/kd_power.py --worker 0/2 &     # two processes share the work
    python benchmarks/kd_power.py --worker 1/2 &
    python benchmarks/kd_power.py --report-only      # the tables from the recorded units
    python benchmarks/kd_power.py --quick            # smoke run: 1,500 images, 2 seeds

A run of hours goes on while the code moves on: run it from a worktree pinned at one commit
(``git worktree add ../kdp_code COMMIT``) with ``--units-dir`` pointing here; every unit
records its code hash and commit, and ``--report-only --code HASH`` reports them from here.

Regime (the pilot's, benchmarks/kd_pilot.py): Fashion-MNIST, all 54,000 training images, no
augmentation, resnet20 teachers, students trained for one epoch from scratch with KD at
alpha 0.9, T 4 (chosen by the pilot on validation). Choices are made on the 6,000-image
validation split; results are top-1 on all 10,000 test images.

Students: 8 of at most 1/4 of the teacher's parameters: 4 planned (the first candidate of
``plan`` for a device, under 1.2x the latency and 1.25x the memory of a reference student d1 k5
e4: the planner keeps a 10% latency margin)
and 4 random ones the teachers are never told about.

Teachers, per seed (each seed has its own teachers, student initialisations and data order):
- ``vanilla0``: CE, ``teacher_epochs`` from scratch (phase one of every two-phase teacher).
- ``vanilla``: vanilla0 fine-tuned ``ft_epochs`` more with CE at ``ft_lr``: the control of
  the two-phase GTN teachers (the same steps, without the branches).
- GTN variants (``VARIANTS``): tried on seed 0 only; the one whose students reach the best
  pool-average *validation* top-1 becomes ``gtn`` for every other seed, frozen in
  ``selection.json`` before those seeds run.
- ``sftn:K``: the chosen recipe with the sampler fixed on student K (``sftn_students``).
Student methods: ``ce`` (no teacher), ``vanilla`` and ``gtn`` (classic KD), ``dkd`` (DKD from
the vanilla teacher), ``sftn``. Capacity arm: the same students under a wrn_16_2 teacher
(2.5x resnet20's parameters), vanilla and gtn, on the first ``capacity_seeds`` seeds.

Units and resuming: each finished teacher or student is one JSON file under
``benchmarks/results/kd_power/units/`` (teachers also keep their test-split logits, for the
divergence diagnostic), committed as they finish, so a new machine resumes from the
repository: only units without a file run. A unit's name holds a hash of its settings and of
the training code (``code_hash``): changed code never reuses an old result. Weights live in
``--work-dir`` (a cache: a teacher whose weights are gone is trained again).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, elapsed_log, markdown_table, settings_key  # noqa: E402
from benchmarks.power_stats import paired_summary  # noqa: E402

DEVICES = ("raspberry-pi-4", "x86-laptop", "jetson-nano", "raspberry-pi-5")
RANDOM_STUDENTS = 4
# Two-phase variants start from vanilla0 and condition it as a fine-tune: the branches learn
# from the fixed teacher for the first third, then their pull on it ramps in over a third.
TWO_PHASE = dict(two_phase=True, kl_detach=False, teacher_grad=1.0, cond_start_frac=1 / 3,
                 cond_ramp_frac=1 / 3)
VARIANTS = {
    # the toolkit's default before this experiment: joint, KL detached, 0.1 of the gradient
    "gtn-shipped": dict(),
    "gtn-2p-kl0.3": dict(TWO_PHASE, l_kl=0.3),
    "gtn-2p-kl1": dict(TWO_PHASE, l_kl=1.0),
    "gtn-2p-kl3": dict(TWO_PHASE, l_kl=3.0),
    "gtn-2p-kl1-tau4": dict(TWO_PHASE, l_kl=1.0, tau=4.0),  # at the distillation temperature
    "gtn-2p-kl1-tg0.3": dict(TWO_PHASE, l_kl=1.0, teacher_grad=0.3),
    # joint from scratch, the KL reaching the teacher only late (ramped in over the last 40%)
    "gtn-late-kl1": dict(kl_detach=False, teacher_grad=1.0, l_kl=1.0, cond_start_frac=0.6,
                         cond_ramp_frac=0.2),
}
FULL = dict(seeds=5, teacher="resnet20", teacher_epochs=3, ft_epochs=1, ft_lr=0.005,
            kd_epochs=1, limit_train=0, batch_size=128, lr=0.05, alpha=0.9, temperature=4.0,
            dkd_beta=8.0, sftn_students=2, capacity_teacher="wrn_16_2", capacity_seeds=3)
QUICK = dict(FULL, seeds=2, teacher_epochs=1, limit_train=1500, sftn_students=1,
             capacity_seeds=1)
# Modules whose code decides a unit's numbers (parsed, so comments and docstrings do not
# count). train/config.py is left out: it holds TrainConfig's defaults and checks, and every
# teacher's key holds its whole resolved config (a student's its whole KDConfig) instead.
TRAINING_CODE = ("gtn_deploy/train", "gtn_deploy/models", "gtn_deploy/supernet",
                 "gtn_deploy/data", "gtn_deploy/arch.py", "gtn_deploy/spaces")
NOT_TRAINING_CODE = ("gtn_deploy/train/config.py",)
ROOT = Path(__file__).resolve().parents[1]


def code_hash(root: Path = ROOT, entries: tuple[str, ...] = TRAINING_CODE,
              skip: tuple[str, ...] = NOT_TRAINING_CODE) -> str:
    """sha256 of the training code's syntax trees, docstrings left out."""
    digest = hashlib.sha256()
    for entry in entries:
        path = root / entry
        for file in sorted([path] if path.is_file() else path.rglob("*.py")):
            if file.relative_to(root).as_posix() in skip:
                continue
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                        isinstance(body[0].value, ast.Constant) and \
                        isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:12]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--worker", default="0/1", help="I/N: this process is worker I of N")
    ap.add_argument("--work-dir", type=Path, default=None, help="weights cache")
    ap.add_argument("--units-dir", type=Path, default=None, help="recorded units")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report-only", action="store_true", help="train nothing; write tables")
    ap.add_argument("--no-capacity", action="store_true", help="skip the capacity arm")
    ap.add_argument("--code", default=None,
                    help="report the units of this training-code hash (default: this code's)")
    for key, value in FULL.items():
        ap.add_argument("--" + key.replace("_", "-"), type=type(value), default=None)
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.name = "kd_power_quick" if args.quick else "kd_power"
    args.units_dir = args.units_dir or RESULTS / args.name / "units"
    args.work_dir = args.work_dir or Path(f"/tmp/gtn_{args.name}")
    index, _, count = args.worker.partition("/")
    args.worker_index, args.workers = int(index), int(count or 1)
    return args


def setting(args) -> dict:
    return {k: getattr(args, k) for k in FULL if k not in ("seeds", "capacity_seeds")}


# -- the pool ----------------------------------------------------------------------------------
def student_pool(space, max_params: int) -> list[dict]:
    """Four planned students (one per device, distinct) and four random ones, all <= max."""
    from gtn_deploy.spaces.mbconv import ArchConfig
    from gtn_deploy.cost.analytic import network_cost
    from gtn_deploy.cost.latency import predict_latency, predict_memory_mb
    from gtn_deploy.profiles import load_profile
    from gtn_deploy.search.planner import PlanRequest, plan_device

    def params(arch) -> int:
        return network_cost(space, arch).params

    ref = space.validate(ArchConfig.from_stage_blocks(
        [[(5, 4)]] * space.num_stages, max(space.resolutions), space.width_mult))
    pool, seen = [], set()
    for device in DEVICES:
        profile = load_profile(device)
        precision = profile.preferred_precision
        req = PlanRequest.for_device(
            profile, space,
            latency_ms=1.2 * predict_latency(space, ref, profile, precision).latency_ms,
            memory_mb=1.25 * predict_memory_mb(space, ref, precision), top_k=40)
        _, entry = plan_device(req)
        for cand in entry["candidates"]:
            arch = ArchConfig.from_dict(cand["arch"])
            if arch not in seen and params(arch) <= max_params:
                seen.add(arch)
                pool.append({"id": f"plan:{device}", "kind": "planned", "arch": arch,
                             "budget_ms": round(req.latency_ms, 4)})
                break
    rng = random.Random(2026)
    while len(pool) < len(DEVICES) + RANDOM_STUDENTS:
        arch = space.sample(rng)
        if arch not in seen and params(arch) <= max_params:
            seen.add(arch)
            pool.append({"id": f"random{len(pool) - len(DEVICES)}", "kind": "random",
                         "arch": arch})
    for s in pool:
        s["params"] = params(s["arch"])
    return pool


# -- units ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Teacher:
    """A teacher run: its name in the tables, its seed and network, how it trains."""

    name: str  # vanilla0, vanilla, a variant, gtn (the chosen one), sftn:K; cap- prefixed
    seed: int
    net: str
    recipe: dict = field(hash=False, compare=False)  # the TrainConfig fields it sets
    parent: "Teacher | None" = field(default=None, hash=False, compare=False)

    def config(self, args, space, pool, work_dir: Path):
        from gtn_deploy.train.config import TrainConfig

        job = {k: v for k, v in self.recipe.items() if k != "two_phase"}
        two_phase = self.recipe.get("two_phase", False)
        epochs, lr = (args.ft_epochs, args.ft_lr) if two_phase else (args.teacher_epochs,
                                                                      args.lr)
        if self.parent is not None:
            job["init_from"] = str(teacher_dir(args, space, pool, self.parent, work_dir))
        if job.pop("pool", False):
            job["pool"] = tuple(s["arch"].to_dict() for s in pool if s["kind"] == "planned")
        if "student" in job:
            job["student"] = pool[job["student"]]["arch"].to_dict()
        return TrainConfig(task=space.task.name, teacher=self.net, epochs=epochs,
                           batch_size=args.batch_size, lr=lr, seed=self.seed,
                           limit_train=args.limit_train or None, augment=False,
                           progress=False, **job)

    def key(self, args, space, pool) -> str:
        cfg = self.config(args, space, pool, Path("/")).to_dict()
        cfg.pop("init_from", None)  # the parent's own key stands for it
        parent = self.parent.key(args, space, pool) if self.parent else None
        return settings_key({"cfg": cfg, "parent": parent, "code": args.code})


def teacher_dir(args, space, pool, t: Teacher, work_dir: Path) -> Path:
    return work_dir / "teachers" / f"{t.name.replace(':', '-')}-s{t.seed}-" \
        f"{t.key(args, space, pool)}"


def teachers_of_seed(args, seed: int, chosen: str | None, net: str, prefix: str = ""
                     ) -> dict[str, Teacher]:
    """The teachers of one seed by name, parents first. Seed 0 of the main arm holds every
    variant (its ``gtn`` is the chosen variant's run); other seeds hold ``gtn`` once chosen."""
    v0 = Teacher(prefix + "vanilla0", seed, net, {"method": "vanilla"})
    out = {v0.name: v0, prefix + "vanilla": Teacher(
        prefix + "vanilla", seed, net, {"method": "vanilla", "two_phase": True}, v0)}

    def gtn(name: str, recipe: dict, extra: dict | None = None) -> Teacher:
        full = {"method": "gtn", "sampler": "learned", "pool": True, **recipe, **(extra or {})}
        return Teacher(name, seed, net, full, v0 if recipe.get("two_phase") else None)

    if seed == 0 and not prefix:
        out.update({n: gtn(n, r) for n, r in VARIANTS.items()})
    elif chosen is not None:
        out[prefix + "gtn"] = gtn(prefix + "gtn", VARIANTS[chosen])
    if chosen is not None and not prefix:
        for k in range(args.sftn_students):
            out[f"sftn:{k}"] = gtn(f"sftn:{k}", VARIANTS[chosen],
                                   {"method": "sftn", "pool": False, "student": k})
    return out


def student_key(args, seed: int, student: dict, method: str, teacher_key: str | None) -> str:
    return settings_key({"arch": student["arch"].to_dict(), "method": method,
                         "teacher": teacher_key, "kd": kd_config(args, seed, method).to_dict(),
                         "code": args.code})


def kd_config(args, seed: int, method: str):
    """A student's whole KDConfig: ``ce`` trains without a teacher, ``dkd`` with DKD, every
    other method with classic KD from its teacher."""
    from gtn_deploy.train.distill import KDConfig

    return KDConfig(task="fashion-mnist", epochs=args.kd_epochs, seed=seed,
                    batch_size=args.batch_size, lr=args.lr,
                    alpha=0.0 if method == "ce" else args.alpha,
                    kd_loss="dkd" if method == "dkd" else "kd", dkd_beta=args.dkd_beta,
                    temperature=args.temperature, limit_train=args.limit_train or None,
                    augment=False, progress=False)


# -- the work list -----------------------------------------------------------------------------
@dataclass
class Job:
    unit: str  # file stem under units/
    kind: str  # "teacher" | "student"
    seed: int
    teacher: Teacher | None
    student: int | None = None
    method: str | None = None  # student method: ce, vanilla, dkd, a variant, gtn, sftn, cap-*
    needs: tuple[str, ...] = ()  # units that must be recorded first


def jobs(args, space, pool, chosen: str | None) -> list[Job]:
    """Every unit of the experiment in the order they should run (seed by seed)."""
    out = []
    for seed in range(args.seeds):
        out += seed_jobs(args, space, pool, seed, chosen, args.teacher, "")
    if not args.no_capacity and chosen is not None:
        for seed in range(args.capacity_seeds):
            out += seed_jobs(args, space, pool, seed, chosen, args.capacity_teacher, "cap-")
    # the selection first: every other seed's gtn waits for it (a stable sort keeps the rest)
    return sorted(out, key=lambda j: not selects(j))


def selects(job: Job) -> bool:
    """Whether the choice of the GTN variant waits for ``job``: a variant's teacher or
    student on seed 0, or the vanilla teacher the two-phase variants start from."""
    t = job.teacher
    return job.seed == 0 and t is not None and (t.name in VARIANTS or (
        job.kind == "teacher" and t.name == "vanilla0"))


def seed_jobs(args, space, pool, seed, chosen, net, prefix) -> list[Job]:
    ts = teachers_of_seed(args, seed, chosen, net, prefix)
    out, tunit = [], {}
    for name, t in ts.items():
        tunit[name] = teacher_unit(args, space, pool, t)
        needs = (tunit[t.parent.name],) if t.parent else ()
        out.append(Job(tunit[name], "teacher", seed, t, needs=needs))
    if not prefix:
        out += [student_job(args, seed, pool, i, "ce", None, None) for i in range(len(pool))]
    for name, t in ts.items():
        if name.endswith("vanilla0"):
            continue
        method = name.split(":")[0]
        targets = [int(name.split(":")[1])] if method == "sftn" else range(len(pool))
        for m in [method] + (["dkd"] if method == "vanilla" else []):
            out += [student_job(args, seed, pool, i, m, t, tunit[name]) for i in targets]
    return out


def teacher_unit(args, space, pool, t: Teacher) -> str:
    return f"s{t.seed}-teacher-{t.name.replace(':', '-')}-{t.key(args, space, pool)}"


def student_job(args, seed, pool, i, method, teacher, tunit) -> Job:
    tkey = tunit.rsplit("-", 1)[1] if tunit else None
    unit = f"s{seed}-{pool[i]['id'].replace(':', '-')}-{method}-" \
        f"{student_key(args, seed, pool[i], method, tkey)}"
    return Job(unit, "student", seed, teacher, i, method, (tunit,) if tunit else ())


# -- running -----------------------------------------------------------------------------------
class Claims:
    """Which process works on which unit: a file created exclusively, naming host and pid.
    A claim of a dead process on this host is taken over; the folder is the work dir's, so a
    new machine starts with none."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> bool:
        path = self.folder / name
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False

    def drop(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            host, pid = path.read_text().split()
        except (OSError, ValueError):
            return True
        if host != socket.gethostname():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return int(pid) == os.getpid()


class Runner:
    def __init__(self, args, space, data, pool, log):
        self.args, self.space, self.data, self.pool, self.log = args, space, data, pool, log
        self.units = args.units_dir
        self.units.mkdir(parents=True, exist_ok=True)
        self.claims = Claims(args.work_dir / "claims")

    def recorded(self, unit: str) -> bool:
        return (self.units / f"{unit}.json").is_file()

    def run(self) -> None:
        while True:
            chosen = decide_selection(self.args, self.space, self.pool, self.units, self.log)
            todo = [j for j in jobs(self.args, self.space, self.pool, chosen)
                    if not self.recorded(j.unit)]
            if not todo:
                return
            ready = [j for j in todo if all(self.recorded(n) for n in j.needs)]
            mine = [j for k, j in enumerate(ready)
                    if k % self.args.workers == self.args.worker_index] + ready
            for job in mine:
                if self.claims.take(job.unit):
                    try:
                        if not self.recorded(job.unit):
                            self.do(job)
                    finally:
                        self.claims.drop(job.unit)
                    break
            else:
                time.sleep(20)  # everything runnable is in another process's hands

    def do(self, job: Job) -> None:
        if job.kind == "teacher":
            self.record_teacher(job)
        else:
            self.record_student(job)

    # teachers
    def teacher_run(self, t: Teacher) -> Path:
        """The teacher's run folder with its weights, trained here if the cache lacks it."""
        from gtn_deploy.train.trainer import TeacherTrainer

        run = teacher_dir(self.args, self.space, self.pool, t, self.args.work_dir)
        if (run / "summary.json").is_file():
            return run
        if t.parent is not None:
            self.teacher_run(t.parent)
        claim = "weights-" + run.name
        while not self.claims.take(claim):
            time.sleep(15)  # the other process trains it
        try:
            if not (run / "summary.json").is_file():
                t0 = time.perf_counter()
                cfg = t.config(self.args, self.space, self.pool, self.args.work_dir)
                TeacherTrainer(cfg, run, resume=True, device="cpu", data=self.data).run()
                self.log(f"teacher {run.name}: {time.perf_counter() - t0:.0f} s")
        finally:
            self.claims.drop(claim)
        return run

    def record_teacher(self, job: Job) -> None:
        import numpy as np

        from gtn_deploy.train.kd_teacher import open_teacher

        t = job.teacher
        run = self.teacher_run(t)
        doc = json.loads((run / "summary.json").read_text())
        source = open_teacher(run)
        sampler = run / "sampler.json"
        if not t.name.endswith("vanilla0") and not t.name.startswith("sftn"):
            logits = test_logits(source, self.data, self.space.task)
            np.savez_compressed(self.units / f"{job.unit}.logits.npz",
                                logits=logits.astype(np.float16))
        write_unit(self.units / f"{job.unit}.json", {
            "unit": job.unit, "kind": "teacher", "seed": t.seed, "name": t.name, "net": t.net,
            "recipe": {k: v for k, v in t.recipe.items()}, "sha256": source.sha256,
            "metrics": doc["teacher_metrics"], "train_time_s": doc["train_time_s"],
            "params": teacher_params(source),
            "sampler_entropy": json.loads(sampler.read_text()).get("entropy")
            if sampler.is_file() else None, "code": self.args.code})

    # students
    def record_student(self, job: Job) -> None:
        from gtn_deploy.train.distill import distill_student
        from gtn_deploy.train.kd_teacher import open_teacher

        a, s = self.args, self.pool[job.student]
        source = open_teacher(self.teacher_run(job.teacher)) if job.teacher else None
        cfg = kd_config(a, job.seed, job.method)
        out = a.work_dir / "students" / job.unit
        summary = distill_student(cfg, s["arch"], out, source, resume=True, device="cpu",
                                  data=self.data, label={"student": s["id"],
                                                         "method": job.method})
        m = summary["metrics"]
        self.log(f"seed {job.seed} {s['id']} {job.method}: val {m['val_top1']:.2f} test "
                 f"{m['test_top1']:.2f} ({summary['train_time_s']:.0f} s)")
        write_unit(self.units / f"{job.unit}.json", {
            "unit": job.unit, "kind": "student", "seed": job.seed, "student": s["id"],
            "method": job.method, "teacher": job.teacher.name if job.teacher else None,
            "teacher_sha256": source.sha256 if source else None,
            "val_top1": m["val_top1"], "test_top1": m["test_top1"],
            "train_time_s": summary["train_time_s"], "code": a.code})


def write_unit(path: Path, doc: dict) -> None:
    from gtn_deploy.io_utils import atomic_write_json

    atomic_write_json(path, {**doc, "commit": code_commit(), "host": socket.gethostname(),
                             "finished": time.strftime("%Y-%m-%d %H:%M:%S")})


def code_commit() -> str | None:
    """The git commit of the checkout this script runs from (a long experiment runs from
    a pinned worktree, so that main can move on meanwhile)."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def teacher_params(source) -> int:
    return sum(p.numel() for p in source.load().parameters())


def test_logits(source, data, task):
    """The teacher's logits on every test image (eval mode), as a float32 array."""
    from gtn_deploy.train.teacher_logits import training_logits

    return training_logits(source.load(), source.sha256, data.test, task).numpy()


# -- selection -----------------------------------------------------------------------------------
def decide_selection(args, space, pool, units: Path, log) -> str | None:
    """The chosen GTN variant: read from selection.json once written; written (frozen) as soon
    as every variant's seed-0 students are recorded, by the best pool-average val top-1."""
    path = units.parent / "selection.json"
    if path.is_file():
        return json.loads(path.read_text())["chosen"]
    rows = load_units(units, args.code)["students"]
    scores = {}
    for variant in VARIANTS:
        vals = [r["val_top1"] for r in rows if r["seed"] == 0 and r["method"] == variant]
        if len(vals) < len(pool):
            return None
        scores[variant] = statistics.mean(vals)
    chosen = max(scores, key=scores.get)
    write_unit(path, {"chosen": chosen, "by": "seed-0 pool-average student val top-1",
                      "val_pool_average": scores, "code": args.code})
    log(f"selection: {chosen} ({scores[chosen]:.2f} val); frozen in {path}")
    return chosen


def load_units(units: Path, code: str) -> dict[str, list[dict]]:
    """The recorded units of this training code (a unit of other code is not a result)."""
    out = {"teachers": [], "students": []}
    for f in sorted(units.glob("*.json")):
        doc = json.loads(f.read_text())
        if doc.get("code") == code:
            out[doc["kind"] + "s"].append(doc)
    return out


# -- the report --------------------------------------------------------------------------------
def by_method(students: list[dict], chosen: str | None) -> dict[str, dict]:
    """{method: {(seed, student): row}}; seed 0's ``gtn`` is the chosen variant's run."""
    out: dict[str, dict] = {}
    for r in students:
        out.setdefault(r["method"], {})[(r["seed"], r["student"])] = r
        if chosen is not None and r["seed"] == 0 and r["method"] == chosen:
            out.setdefault("gtn", {})[(0, r["student"])] = r
    return out


def mean_kl(p_logits, q_logits) -> float:
    """Mean over images of KL(softmax(p) || softmax(q)) at T = 1."""
    import numpy as np

    def log_softmax(z):
        z = z.astype(np.float64)
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def divergence(units: Path, teachers: list[dict], chosen: str | None) -> dict:
    import numpy as np

    def logits(t):
        path = units / f"{t['unit']}.logits.npz"
        return np.load(path)["logits"] if path.is_file() else None

    named = {(t["seed"], t["name"]): t for t in teachers}
    if chosen is not None and (0, chosen) in named:
        named[(0, "gtn")] = named[(0, chosen)]
    out = {"gtn_vs_vanilla_kl": {}, "vanilla_vs_vanilla_kl": {}, "variants_vs_vanilla_kl": {}}
    seeds = sorted({s for s, n in named if n == "vanilla"})
    for s in seeds:
        v = logits(named[(s, "vanilla")])
        if (s, "gtn") in named:
            out["gtn_vs_vanilla_kl"][str(s)] = mean_kl(v, logits(named[(s, "gtn")]))
        if s + 1 in seeds:
            out["vanilla_vs_vanilla_kl"][f"{s}-{s + 1}"] = mean_kl(
                v, logits(named[(s + 1, "vanilla")]))
    for name in VARIANTS:
        if (0, name) in named and (0, "vanilla") in named:
            out["variants_vs_vanilla_kl"][name] = mean_kl(logits(named[(0, "vanilla")]),
                                                          logits(named[(0, name)]))
    for key in ("gtn_vs_vanilla_kl", "vanilla_vs_vanilla_kl"):
        values = list(out[key].values())
        out[key] = {"mean": statistics.mean(values) if values else None, "by": out[key]}
    return out


def values(rows: dict, split: str = "test_top1") -> dict:
    return {k: r[split] for k, r in rows.items()}


def report(args, pool, units: Path, data_summary: dict) -> dict:
    from benchmarks.common import write_results
    from gtn_deploy.io_utils import atomic_write_text

    chosen_path = units.parent / "selection.json"
    selection_doc = json.loads(chosen_path.read_text()) if chosen_path.is_file() else None
    chosen = selection_doc["chosen"] if selection_doc else None
    recorded = load_units(units, args.code)
    rows = by_method(recorded["students"], chosen)
    teachers = recorded["teachers"]
    ids = [s["id"] for s in pool]

    def complete(method: str) -> list[int]:
        have = rows.get(method, {})
        return [s for s in range(args.seeds) if all((s, i) in have for i in ids)]

    main = ("ce", "vanilla", "gtn", "dkd")
    seeds = [s for s in range(args.seeds) if all(s in complete(m) for m in main)]

    def compare(a: str, b: str, split="test_top1"):
        return paired_summary(values(rows.get(a, {}), split), values(rows.get(b, {}), split))

    comparisons = {"gtn_vs_vanilla": compare("gtn", "vanilla"),
                   "vanilla_vs_ce": compare("vanilla", "ce"),
                   "gtn_vs_ce": compare("gtn", "ce"), "dkd_vs_vanilla": compare("dkd", "vanilla"),
                   "sftn_vs_vanilla": compare("sftn", "vanilla"),
                   "sftn_vs_gtn": compare("sftn", "gtn")}
    selection = []
    for name in VARIANTS:
        r0 = {k: v for k, v in rows.get(name, {}).items() if k[0] == 0}
        t0 = next((t for t in teachers if t["seed"] == 0 and t["name"] == name), None)
        whole = len(r0) == len(ids)  # an average over part of the pool is no pool average
        selection.append({
            "variant": name, "recipe": VARIANTS[name], "students": len(r0),
            "val_pool_average": statistics.mean(r["val_top1"] for r in r0.values())
            if whole else None,
            "test_pool_average": statistics.mean(r["test_top1"] for r in r0.values())
            if whole else None,
            "teacher_val_top1": t0["metrics"]["val_top1"] if t0 else None,
            "teacher_test_top1": t0["metrics"]["test_top1"] if t0 else None})
    div = divergence(units, teachers, chosen)
    for entry in selection:
        entry["kl_from_vanilla"] = div["variants_vs_vanilla_kl"].get(entry["variant"])
    capacity = {"teacher": args.capacity_teacher,
                "gtn_vs_vanilla": compare("cap-gtn", "cap-vanilla"),
                "vanilla_vs_ce": compare("cap-vanilla", "ce"),
                "vanilla_vs_resnet20_vanilla": compare("cap-vanilla", "vanilla")}
    tparams = {t["net"]: t["params"] for t in teachers}
    commits = sorted({u.get("commit") for u in teachers + recorded["students"]} - {None})
    doc = {"setting": setting(args), "code": args.code, "code_commits": commits,
           "data": data_summary,
           "seeds": seeds, "seeds_planned": args.seeds,
           "teacher_params": tparams.get(args.teacher),
           "students": [{"name": s["id"], "kind": s["kind"], "params": s["params"],
                         "arch": s["arch"].summary()} for s in pool],
           "chosen_gtn": chosen, "comparisons": comparisons,
           "teacher_divergence": div, "selection": selection,
           "selection_frozen": selection_doc,
           "capacity_arm": {**capacity, "teacher_params": tparams.get(args.capacity_teacher)},
           "methods": method_table(rows, ids),
           "teachers": teacher_rows(teachers, chosen),
           "units": {"teachers": len(teachers), "students": len(recorded["students"])}}
    write_results(args.name, doc)
    atomic_write_text(RESULTS / f"{args.name}.md", markdown(args, doc))
    plot(doc, rows, RESULTS / f"{args.name}.png")
    return doc


def method_table(rows: dict, ids: list[str]) -> dict:
    """Per method: each student's test top-1 mean and std over seeds, and the per-seed pool
    averages where the seed has every student."""
    out = {}
    for method, got in rows.items():
        per_student = {}
        for i in ids:
            v = [r["test_top1"] for (s, st), r in got.items() if st == i]
            if v:
                per_student[i] = {"mean": statistics.mean(v), "n": len(v),
                                  "std": statistics.stdev(v) if len(v) > 1 else 0.0}
        pool_avg = {}
        for s in sorted({k[0] for k in got}):
            if all((s, i) in got for i in ids):
                pool_avg[str(s)] = {
                    "test": statistics.mean(got[(s, i)]["test_top1"] for i in ids),
                    "val": statistics.mean(got[(s, i)]["val_top1"] for i in ids)}
        out[method] = {"students": per_student, "pool_average": pool_avg}
    return out


def teacher_rows(teachers: list[dict], chosen: str | None) -> list[dict]:
    return [{"seed": t["seed"], "name": t["name"], "net": t["net"],
             "chosen": t["name"] == chosen, **t["metrics"],
             "train_time_s": t["train_time_s"]} for t in teachers]


def fmt_ci(c: dict | None) -> list[str]:
    if not c:
        return ["-", "-", "-", "-", "-"]
    ci = "-" if c["ci95"] is None else f"{c['ci95'][0]:+.2f} .. {c['ci95'][1]:+.2f}"
    boot = f"{c['ci95_bootstrap'][0]:+.2f} .. {c['ci95_bootstrap'][1]:+.2f}"
    return [f"{c['mean']:+.2f}", ci, boot, f"{c['win_rate']:.0%} of {c['pairs']}",
            str(c["seeds"])]


def markdown(args, doc: dict) -> str:
    from benchmarks.common import conditions

    cond = conditions()
    head = ["comparison", "mean gain (pts)", "95% CI, t over seeds", "95% CI, bootstrap pairs",
            "win rate", "seeds"]
    comp = [[k.replace("_", " "), *fmt_ci(v)] for k, v in doc["comparisons"].items()]
    cap = [[f"{args.capacity_teacher}: {k.replace('_', ' ')}", *fmt_ci(v)]
           for k, v in doc["capacity_arm"].items() if k not in ("teacher", "teacher_params")]
    sel = [[e["variant"], e["students"],
            "-" if e["val_pool_average"] is None else f"{e['val_pool_average']:.2f}",
            "-" if e["teacher_val_top1"] is None else f"{e['teacher_val_top1']:.2f}",
            "-" if e["kl_from_vanilla"] is None else f"{e['kl_from_vanilla']:.4f}"]
           for e in doc["selection"]]
    div = doc["teacher_divergence"]

    def kl(key):
        v = div[key]["mean"]
        return "-" if v is None else f"{v:.4f} ({len(div[key]['by'])} pairs)"

    vanilla_pool = doc["methods"].get("vanilla", {}).get("pool_average", {}).get("0")
    students = [[s["name"], s["kind"], f"{s['params'] / 1e3:.1f}k",
                 s["arch"].replace("|", "\\|")] for s in doc["students"]]  # '|' ends a cell
    methods = [[m, *(f"{v['students'][s['name']]['mean']:.2f} ± "
                     f"{v['students'][s['name']]['std']:.2f} ({v['students'][s['name']]['n']})"
                     if s["name"] in v["students"] else "-" for s in doc["students"])]
               for m, v in doc["methods"].items()]
    lines = [
        f"# KD with power: Fashion-MNIST, {len(doc['students'])} students, "
        f"{len(doc['seeds'])} complete seeds of {doc['seeds_planned']}",
        "",
        f"Command: `python benchmarks/kd_power.py --worker 0/2` and `--worker 1/2` (two "
        f"processes, one thread each), then `--report-only`. Machine: {cond['cpu']}, "
        f"{cond['cores']} cores. Training code {doc['code']} (commits "
        f"{', '.join(c[:10] for c in doc['code_commits']) or '-'}). "
        f"Setting: {doc['setting']}. "
        f"Data: {doc['data']}. Test top-1 on all test images; choices on validation.",
        "",
        f"Teacher {args.teacher} ({doc['teacher_params']} params); every student has at most "
        "1/4 of its parameters.",
        "",
        markdown_table(["student", "kind", "params", "arch"], students),
        "",
        "## Paired gains (test top-1, points)",
        "",
        markdown_table(head, comp),
        "",
        f"## The GTN variant, chosen on seed 0's student validation: {doc['chosen_gtn']}",
        "",
        f"vanilla's seed-0 pool average: {pool_text(vanilla_pool)}.",
        "",
        markdown_table(["variant", "students", "pool-average val top-1", "teacher val top-1",
                        "KL(vanilla ‖ variant), test, T=1"], sel),
        "",
        "## Teacher divergence (mean KL on the test split, T = 1)",
        "",
        f"- GTN vs vanilla, same seed: {kl('gtn_vs_vanilla_kl')}",
        f"- vanilla vs vanilla, consecutive seeds (the noise floor): "
        f"{kl('vanilla_vs_vanilla_kl')}",
        "",
        f"## Capacity arm: a {args.capacity_teacher} teacher "
        f"({doc['capacity_arm']['teacher_params']} params)",
        "",
        markdown_table(head, cap),
        "",
        "## Teachers (the teacher's own figures; test split unless named)",
        "",
        markdown_table(["seed", "teacher", "val top-1", "test top-1", "logit std", "entropy",
                        "p(true)", "train s"],
                       [[t["seed"], t["name"], f"{t['val_top1']:.2f}", f"{t['test_top1']:.2f}",
                         f"{t['test_logit_std']:.2f}", f"{t['test_entropy']:.3f}",
                         f"{t['test_p_true']:.3f}", f"{t['train_time_s']:.0f}"]
                        for t in sorted(doc["teachers"], key=lambda t: (t["seed"], t["name"]))]),
        "",
        "## Per student (test top-1, mean ± std over seeds (runs))",
        "",
        markdown_table(["method"] + [s["name"] for s in doc["students"]], methods),
        "",
    ]
    return "\n".join(lines)


def pool_text(avg: dict | None) -> str:
    return "-" if not avg else f"val {avg['val']:.2f}, test {avg['test']:.2f}"


def plot(doc: dict, rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = {k: v for k, v in doc["comparisons"].items() if v}
    if not comps:
        return
    fig, ax = plt.subplots(figsize=(9, 4))
    for x, (name, c) in enumerate(comps.items()):
        per_seed = list(c["per_seed"].values())
        ax.scatter([x] * len(per_seed), per_seed, color="0.6", s=14, zorder=2)
        if c["ci95"]:
            ax.errorbar([x], [c["mean"]], yerr=[[c["mean"] - c["ci95"][0]],
                                                [c["ci95"][1] - c["mean"]]],
                        fmt="o", color="C0", capsize=4, zorder=3)
        else:
            ax.plot([x], [c["mean"]], "o", color="C0")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(comps)), [k.replace("_vs_", " - ") for k in comps], fontsize=8)
    ax.set_ylabel("pool-average test top-1 gain (pts)")
    ax.set_title("paired gains: per-seed pool averages (grey), mean and 95% t-interval")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.data import load_space_data
    from gtn_deploy.models import create_teacher

    log = elapsed_log(time.perf_counter())
    if args.code is not None and not args.report_only:
        raise SystemExit("error: --code only selects what --report-only reports; training "
                         "always runs (and keys its units by) this checkout's code")
    args.code = args.code or code_hash()
    space = get_space("fashion-mnist")
    max_params = sum(p.numel() for p in create_teacher(args.teacher, space.task).parameters()) // 4
    pool = student_pool(space, max_params)
    for s in pool:
        log(f"student {s['id']}: {s['arch'].summary()} ({s['params']} params)")
    data = load_space_data(space, None, limit_train=args.limit_train or None)
    log(f"code {args.code}; {len(data.train)} train / {len(data.val)} val / "
        f"{len(data.test)} test images; worker {args.worker}")
    if not args.report_only:
        Runner(args, space, data, pool, log).run()
    doc = report(args, pool, args.units_dir, data.summary())
    c = doc["comparisons"]["gtn_vs_vanilla"]
    log(f"done: {len(doc['seeds'])} complete seeds; gtn - vanilla "
        f"{'-' if not c else format(c['mean'], '+.2f')}")


if __name__ == "__main__":
    main()
