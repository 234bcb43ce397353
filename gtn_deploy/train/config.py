"""The resolved configuration of a teacher-training run, and reading students from plans.

Precedence is CLI flag > default; the resolved config (with the pool and student
architectures spelled out) is saved as config.json beside every run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtn_deploy.arch import TASKS
from gtn_deploy.checks import MAX_SEED
from gtn_deploy.errors import UsageError
from gtn_deploy.models import TEACHERS
from gtn_deploy.plan_file import load_plan
from gtn_deploy.spaces import (DEFAULT_FAMILY, FAMILIES, create_space, family_free,
                               family as family_entry)
from gtn_deploy.spaces.base import Arch
from gtn_deploy.train.gtn import METHODS
from gtn_deploy.train.sampler import SAMPLER_MODES

BRANCH_MODES = ("one", "all")
LATER_DEFAULTS = {"cond_start_frac": 0.0, "init_from": None, "supernet_init": None}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run's result (plus a few display settings)."""

    method: str = "gtn"
    task: str = "fashion-mnist"
    space: str = DEFAULT_FAMILY  # the network family of the supernet (gtn_deploy.spaces)
    teacher: str = "resnet20"
    epochs: int = 1
    sampler: str = "learned"
    paths: int = 1  # m: sampled paths per step
    # Branches run per path and step: "all", or "one" drawn uniformly (an unbiased estimate
    # of their mean at a fraction of the cost); branch0 = the full student from the image
    branches: str = "one"
    branch0: bool = True
    branch_batch: float = 0.5  # share of each batch the branches see (unbiased, cheaper)
    pool: tuple[dict, ...] = ()  # Arch dicts (from --pool)
    student: dict | None = None  # Arch dict (sftn, from --student)
    batch_size: int = 128  # global, over all processes
    micro_batches: int = 1  # gradient accumulation: the batch runs in this many pieces
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    limit_train: int | None = None
    limit_val: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    data_dir: str | None = None
    l_ce: float = 1.0
    l_kl: float = 3.0
    tau: float = 1.0
    # The teacher side of the conditioning (benchmarks/gtn_teacher_variants.py): with the
    # branch KL pulling on the teacher's logits and the branches' full gradient in its
    # features, a GTN teacher ended 5 points below vanilla (10 in kd_pool's setting).
    # Detached KL + 0.1 of the feature gradient: 0.3 points below, logits as sharp.
    kl_detach: bool = True
    teacher_grad: float = 0.1  # scale of the branch gradients reaching the teacher's features
    sampler_lr: float = 1e-2
    beta: float = 0.05
    gamma: float = 0.1  # pool pull; small enough that the normalised reward moves theta
    augment: bool = True
    # Stabilisers (all methods alike): linear LR warm-up over this share of the steps, and
    # for gtn/sftn a linear ramp of the branch terms from 0 to full weight, so the teacher
    # learns the task before the untrained branches pull on it (without them, the branch KL
    # at weight 3 drove the teacher's CE above chance in the first steps), and gradient-norm
    # clipping (0: off).
    warmup_frac: float = 0.05
    cond_ramp_frac: float = 0.3
    # The teacher's pull toward the branches: 0 before this share of training (the branches
    # learn from a fixed teacher first), then ramped in over cond_ramp_frac. 0: from the start.
    cond_start_frac: float = 0.0
    # Two phases (GTN_METHOD.md's reading of the paper): start the teacher from a finished
    # teacher run (typically vanilla) and condition it with the branches as a fine-tune
    init_from: str | None = None
    # Start the student side from a supernet folder (``gtnd supernet import``: published
    # weights, e.g. Once-for-All's) instead of fresh weights; its space must be the run's
    supernet_init: str | None = None
    clip_grad: float = 5.0
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    log_every: int = 20
    progress: bool = True
    # off a terminal: a progress line every this many seconds (None: every log_every steps)
    progress_every_s: float | None = None
    sources: dict = field(default_factory=dict)  # where pool/student came from

    def to_dict(self) -> dict[str, Any]:
        doc = family_free(json.loads(json.dumps(dataclasses.asdict(self))))
        # settings added later are left out at their defaults, so the configs (checkpoint
        # checks, pipeline stage keys) of runs from before them stay the same
        for name, default in LATER_DEFAULTS.items():
            if doc.get(name) == default:
                doc.pop(name)
        return doc

    @property
    def uses_branches(self) -> bool:
        return self.method != "vanilla"

    def pool_archs(self) -> list[Arch]:
        space = create_space(self.space, self.task)
        return [space.arch_from_dict(a) for a in self.pool]

    def student_arch(self) -> Arch | None:
        return create_space(self.space, self.task).arch_from_dict(self.student) \
            if self.student else None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check names and combinations; raise UsageError naming the valid choices."""
    _choice("method", cfg.method, METHODS)
    _choice("task", cfg.task, tuple(TASKS))
    _choice("space", cfg.space, tuple(FAMILIES))
    _choice("teacher", cfg.teacher, TEACHERS)
    _choice("sampler", cfg.sampler, SAMPLER_MODES)
    _choice("branches", cfg.branches, BRANCH_MODES)
    if cfg.method == "sftn" and cfg.student is None:
        raise UsageError("--method sftn needs --student plan.json:K (the student it is for)")
    if cfg.method != "sftn" and cfg.student is not None:
        raise UsageError("--student is for --method sftn; GTN takes its students via --pool")
    if cfg.cond_start_frac >= 1.0:
        raise UsageError("--cond-start-frac must be below 1 (at 1 the teacher is never "
                         "conditioned)")
    if cfg.supernet_init and not cfg.uses_branches:
        raise UsageError("--supernet-init is for --method gtn or sftn: a vanilla teacher "
                         "trains no supernet")
    if cfg.method == "gtn" and cfg.sampler in ("pool", "fixed") and not cfg.pool:
        raise UsageError(f"--sampler {cfg.sampler} needs --pool plan.json")
    for name in ("epochs", "batch_size", "paths", "micro_batches"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.batch_size % cfg.micro_batches:
        raise UsageError(f"--batch-size {cfg.batch_size} is not divisible by "
                         f"--micro-batches {cfg.micro_batches}")
    _numbers(cfg)
    space = create_space(cfg.space, cfg.task)
    for arch in cfg.pool_archs() + ([cfg.student_arch()] if cfg.student else []):
        space.validate(arch)
    return cfg


# (low, high, low inclusive): every float setting is finite and in its range, so that NaN
# or infinity never trains a model at chance and exits 0
_RANGES = {"lr": (0, None, False), "sampler_lr": (0, None, False), "tau": (0, None, False),
           "l_ce": (0, None, True), "l_kl": (0, None, True), "beta": (0, None, True),
           "gamma": (0, None, True), "momentum": (0, 1, True), "weight_decay": (0, None, True),
           "warmup_frac": (0, 1, True), "cond_ramp_frac": (0, 1, True),
           "cond_start_frac": (0, 1, True),
           "clip_grad": (0, None, True), "val_fraction": (0, 1, False),
           "branch_batch": (0, 1, False), "teacher_grad": (0, 1, True)}


def _numbers(cfg: TrainConfig) -> None:
    for name, (low, high, inclusive) in _RANGES.items():
        value = getattr(cfg, name)
        ok = math.isfinite(value) and (value >= low if inclusive else value > low) and \
            (high is None or value <= high)
        if not ok:
            bound = f"{'>=' if inclusive else '>'} {low}" + (f" and <= {high}" if high else "")
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number {bound}, "
                             f"got {value}")
    for name in ("seed", "split_seed"):
        if not 0 <= getattr(cfg, name) <= MAX_SEED:
            raise UsageError(f"--{name.replace('_', '-')} must be in 0..{MAX_SEED}")
    if cfg.checkpoint_every < 0:
        raise UsageError("--checkpoint-every must be >= 0 (0: only at the end of each epoch)")


def _choice(flag: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise UsageError(f"unknown {flag} '{value}'; valid {flag}s: {', '.join(valid)}")


def read_plan(path: str | Path, task: str, family: str = DEFAULT_FAMILY) -> list[Arch]:
    """Every candidate of a plan file, devices in order, candidates in order."""
    plan = load_plan(path)
    if plan.task != task:
        raise UsageError(f"plan {path} is for task '{plan.task}', this run is for "
                         f"task '{task}'")
    if FAMILIES.get(plan.family) is not family_entry(family):
        raise UsageError(f"plan {path} is of the {plan.family} family, this run trains "
                         f"--space {family}")
    return plan.students()


def read_student(ref: str, task: str, family: str = DEFAULT_FAMILY) -> Arch:
    """``plan.json:K`` -> the K-th (0-based) candidate over all devices in order."""
    path, sep, index = ref.rpartition(":")
    if sep and not index.isdigit() and Path(path).is_file():
        raise UsageError(f"--student {ref}: after ':' comes K, a candidate number "
                         f"(0-based), not '{index}'")
    if not sep or not index.isdigit():
        path, index = ref, "0"
    archs = read_plan(path, task, family)
    k = int(index)
    if k >= len(archs):
        raise UsageError(f"--student {ref}: the plan has {len(archs)} candidates "
                         f"(valid K: 0..{len(archs) - 1})")
    return archs[k]


def unique(archs: list[Arch]) -> list[Arch]:
    seen, out = set(), []
    for arch in archs:
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out
