"""Phase 3 of GTN: distil a frozen teacher into one static student (GTN_METHOD.md).

L = (1 - alpha) * CE(q_S, y) + alpha * T^2 * KL(softmax(z_T/T) || softmax(q_S/T)), T = 4,
alpha = 0.9 by default; without a teacher (the ``ce`` baseline) L = CE(q_S, y). The student
starts from scratch (``build_student``, as in the paper) or from the GTN-trained supernet's
weights (``Supernet.extract``, BN recalibrated before training). After training its BN
statistics are recalibrated on training images and it is evaluated (val and test top-1).

A student folder holds ``config.json``, ``metrics.jsonl``, ``checkpoint/last.pt`` (written
every epoch and every ``checkpoint_every`` steps: the run is ``train.loop.RunLoop``, as a
teacher's is), then ``weights.safetensors`` + ``student.json`` and ``summary.json`` (written
last: its presence means the student is done).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gtn_deploy.checks import check_seed
from gtn_deploy.data import BatchPlan, TaskData, load_space_data, normalize, train_batches
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import atomic_write_json, ensure_writable_dir
from gtn_deploy.spaces import DEFAULT_FAMILY, create_space, family_free
from gtn_deploy.spaces.base import Arch
from gtn_deploy.supernet import build_student, recalibrate_bn, save_student
from gtn_deploy.train import checkpoint as ckpt, teacher_logits
from gtn_deploy.train.distributed import DistInfo
from gtn_deploy.train.evaluate import autocast_for, evaluate
from gtn_deploy.train.kd_teacher import TeacherSource
from gtn_deploy.train.loop import LoopConfig, RunLoop, seed_everything
from gtn_deploy.train.losses import KD_LOSSES, cross_entropy, kd_loss_fn
from gtn_deploy.train.metrics import Meters, MetricsLog

INITS = ("scratch", "supernet")
RUN_FILES = ("config.json", "metrics.jsonl", ckpt.CHECKPOINT_NAME, "summary.json")
SUMMARY_KIND = "gtn_deploy.student_run"


@dataclass(frozen=True)
class KDConfig:
    """Everything that determines a student's result (plus a few display settings)."""

    task: str = "fashion-mnist"
    space: str = DEFAULT_FAMILY  # the students' network family (gtn_deploy.spaces)
    epochs: int = 1
    init: str = "scratch"
    temperature: float = 4.0
    alpha: float = 0.9
    kd_loss: str = "kd"  # a name in losses.KD_LOSSES
    dkd_beta: float = 8.0  # DKD's non-target weight (used by kd_loss "dkd" only)
    seed: int = 0
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    limit_train: int | None = None
    limit_val: int | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    data_dir: str | None = None
    augment: bool = True
    calib_images: int = 2000  # BN recalibration images (training set, no augmentation)
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    log_every: int = 20
    progress: bool = True
    # off a terminal: a progress line every this many seconds (None: every log_every steps)
    progress_every_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return family_free(json.loads(json.dumps(dataclasses.asdict(self))))


def validate_kd(cfg: KDConfig) -> KDConfig:
    if cfg.init not in INITS:
        raise UsageError(f"unknown init '{cfg.init}'; valid inits: {', '.join(INITS)}")
    for name in ("epochs", "batch_size", "calib_images"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {cfg.alpha}")
    if cfg.kd_loss not in KD_LOSSES:
        raise UsageError(f"unknown --kd-loss '{cfg.kd_loss}'; valid: {', '.join(KD_LOSSES)}")
    if not (cfg.dkd_beta >= 0 and math.isfinite(cfg.dkd_beta)):
        raise UsageError(f"--dkd-beta must be a finite number >= 0, got {cfg.dkd_beta}")
    for name in ("temperature", "lr"):  # written so that NaN and infinity fail too
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"--{name} must be a positive finite number, got {value}")
    check_seed(cfg.seed)
    check_seed(cfg.split_seed, "split_seed")
    if cfg.checkpoint_every < 0:
        raise UsageError("--checkpoint-every must be >= 0 (0: only at the end of each epoch)")
    create_space(cfg.space, cfg.task)
    return cfg


class StudentDistiller:
    """Trains one student against a frozen teacher (or with CE only) and saves it."""

    def __init__(self, cfg: KDConfig, arch: Arch, out: str | Path,
                 teacher: TeacherSource | None = None, resume: bool = False,
                 device: str = "cpu", data: TaskData | None = None, label: dict | None = None,
                 supernet_from: TeacherSource | None = None):
        """``teacher``: the KD teacher (None: plain CE). ``supernet_from``: the run whose
        trained supernet ``--init supernet`` starts from (default: the teacher's), so a CE
        baseline can start where its KD twin starts."""
        self.cfg, self.out, self.teacher_src = validate_kd(cfg), Path(out), teacher
        self.supernet_src = supernet_from or teacher
        self.space = create_space(cfg.space, cfg.task)
        self.arch, self.task = self.space.validate(arch), self.space.task
        if cfg.init == "supernet" and self.supernet_src is None:
            raise UsageError("--init supernet needs a teacher folder with a trained supernet")
        self.info = DistInfo(device=device)  # students are never split over processes
        self.label = label or {}
        self.run_config = {"kd": cfg.to_dict(), "arch": arch.to_dict(),
                           "teacher_sha256": teacher.sha256 if teacher else None,
                           "method": cfg.kd_loss if teacher else "ce"}
        if cfg.init == "supernet":
            self.run_config["init_from_sha256"] = self.supernet_src.sha256
        self.resume_state = self._check_out_dir(resume)
        self.data = data or load_space_data(
            self.space, cfg.data_dir, limit_train=cfg.limit_train, limit_val=cfg.limit_val,
            val_fraction=cfg.val_fraction, split_seed=cfg.split_seed)
        self.plan = BatchPlan(len(self.data.train), cfg.batch_size, True)
        if self.plan.steps < 1:
            raise UsageError(f"{len(self.data.train)} training images are fewer than one "
                             f"batch of {cfg.batch_size}; lower --batch-size")
        self.total_steps = cfg.epochs * self.plan.steps
        self._build()

    def _check_out_dir(self, resume: bool) -> dict[str, Any] | None:
        path = self.out / ckpt.CHECKPOINT_NAME
        if not resume and any((self.out / f).exists() for f in RUN_FILES):
            raise UsageError(f"{self.out} already holds a distillation run; pass --resume to "
                             "continue it or choose another --out")
        ensure_writable_dir(path.parent)  # now, not at the first checkpoint after training
        return ckpt.load_checkpoint(path, self.run_config) if resume and path.exists() else None

    def _build(self) -> None:
        cfg, dev = self.cfg, self.info.device
        seed_everything(cfg.seed)
        self.teacher = self.teacher_src.load().to(dev) if self.teacher_src else None
        self.teacher_table = None
        if self.teacher is not None and not cfg.augment \
                and teacher_logits.fits(self.data.train, self.task.num_classes):
            self.teacher_table = teacher_logits.training_logits(
                self.teacher, self.teacher_src.sha256, self.data.train, self.task, dev)
        # channels-last halves depthwise-conv training time on CPU as well as on GPU
        self.student = self._initial_student().to(dev, memory_format=torch.channels_last)
        if cfg.init == "supernet" and self.resume_state is None:
            self.recalibrate(self.student)  # the supernet's statistics mix every subnet
        self.loop = RunLoop(
            KDStep(self), LoopConfig(cfg.epochs, cfg.lr, cfg.momentum, cfg.weight_decay, 0.0,
                                     cfg.seed, cfg.augment, cfg.checkpoint_every,
                                     cfg.log_every, cfg.progress, cfg.progress_every_s),
            self.out, self.data, self.task, self.plan, self.info, self.run_config)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.loop.amp_dtype

    def _initial_student(self):
        if self.cfg.init == "scratch":
            return build_student(self.space, self.arch)
        return self.supernet_src.load_supernet().extract(self.arch)

    def recalibrate(self, model) -> int:
        n = min(len(self.data.train), self.cfg.calib_images)
        plan = BatchPlan(n, min(self.cfg.batch_size, n), drop_last=False)
        dev = self.info.device
        batches = (normalize(x.to(dev), self.task)
                   for _, x, _ in train_batches(self.data.train, self.task, plan, seed=0,
                                                epoch=0, do_augment=False))
        return recalibrate_bn(model, batches)

    def run(self) -> dict[str, Any]:
        """Train (or continue) to the last epoch, recalibrate BN, evaluate, save."""
        self._write_config()
        seconds = self.loop.run(self.resume_state)
        return self._finish(self.loop.log, seconds)

    def _progress_name(self) -> str:
        """``student jetson-orin-nano`` (``ce baseline ...`` without KD), not a work folder."""
        who = " ".join(str(self.label[k]) for k in ("device", "candidate") if k in self.label)
        kd = self.teacher_src is not None and self.cfg.alpha > 0
        return f"{'student' if kd else 'ce baseline'} {who or self.out.name}"

    # -- outputs -----------------------------------------------------------------------------
    def _write_config(self) -> None:
        doc = {"schema_version": 1, "kind": "gtn_deploy.student_config", **self.run_config,
               "arch_summary": self.arch.summary(), "label": self.label,
               "teacher": self.teacher_src.describe() if self.teacher_src else None,
               "data": self.data.summary(), "steps_per_epoch": self.plan.steps,
               "total_steps": self.total_steps, "device": self.info.device}
        atomic_write_json(self.out / "config.json", doc)

    def _finish(self, log: MetricsLog, train_time_s: float) -> dict[str, Any]:
        self.recalibrate(self.student)
        metrics = {f"{split}_top1": evaluate(self.student, getattr(self.data, split), self.task,
                                            self.info, amp_dtype=self.amp_dtype)["top1"]
                   for split in ("val", "test")}
        teacher = self.teacher_src.describe() if self.teacher_src else None
        save_student(self.out, self.student.cpu(), self.arch, self.space,
                     {"metrics": metrics, "method": self.run_config["method"],
                      "teacher": teacher, "config": self.cfg.to_dict(), "label": self.label})
        self.student.to(self.info.device)
        summary = {"schema_version": 1, "kind": SUMMARY_KIND, "id": self.out.name,
                   "method": self.run_config["method"], "arch": self.arch.to_dict(),
                   "arch_summary": self.arch.summary(), "label": self.label,
                   "teacher": teacher, "init": self.cfg.init, "epochs": self.cfg.epochs,
                   "metrics": metrics, "train_time_s": round(train_time_s, 3),
                   "finished_at": time.time()}
        log.write({"event": "final", **metrics})
        atomic_write_json(self.out / "summary.json", summary)
        return summary


class KDStep:
    """One student step: the KD loss against the teacher's logits (read from the table
    when there is one), or plain CE without a teacher."""

    clip_grad = 0.0  # students are not clipped

    def __init__(self, d: StudentDistiller):
        self.d, self.module, self.name = d, d.student, d._progress_name()
        self.clip_groups: dict = {}
        cfg = d.cfg
        self.kd_loss = kd_loss_fn(cfg.kd_loss, cfg.alpha, cfg.temperature, cfg.dkd_beta)

    def meters(self) -> Meters:
        return Meters(teacher=False)

    def forward_backward(self, loop: RunLoop, x: torch.Tensor, y: torch.Tensor,
                         index: torch.Tensor) -> dict[str, float]:
        d, dev = self.d, loop.info.device
        with autocast_for(dev, loop.amp_dtype):
            z_s = self.module(x).float()
            if d.teacher_table is not None:
                z_t = d.teacher_table[index].to(dev)
            elif d.teacher is not None:
                with torch.no_grad():
                    z_t = d.teacher(x).float()
        ce = cross_entropy(z_s, y)
        loss = ce if d.teacher is None else self.kd_loss(z_s, z_t, y)
        loop.backward(loss)
        return {"n": float(len(y)), "loss": float(loss.detach()), "ce": float(ce.detach()),
                "correct": float((z_s.detach().argmax(1) == y).sum())}

    def after_update(self, loop: RunLoop, stats: dict[str, float]) -> dict[str, float]:
        return stats

    def end_of_epoch(self, loop: RunLoop, img_per_s: float | None) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

def distill_student(cfg: KDConfig, arch: Arch, out: str | Path,
                    teacher: TeacherSource | None = None, resume: bool = False,
                    device: str = "cpu", data: TaskData | None = None,
                    label: dict | None = None,
                    supernet_from: TeacherSource | None = None) -> dict[str, Any]:
    """Distil (or CE-train) one student into ``out``; returns its summary.

    With ``resume`` a finished student (summary.json present) is returned as it is.
    """
    summary = Path(out) / "summary.json"
    if resume and summary.is_file():
        return json.loads(summary.read_text())
    return StudentDistiller(cfg, arch, out, teacher, resume, device, data, label,
                            supernet_from).run()
