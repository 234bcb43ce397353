"""What a finished run leaves in DIR: config.json, teacher/, supernet/, sampler.json, summary.json.

``summary.json`` is written last: its presence means the run completed.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from gtn_deploy import __version__
from gtn_deploy.io_utils import atomic_write_json
from gtn_deploy.models import save_teacher
from gtn_deploy.supernet import save_supernet
from gtn_deploy.train.evaluate import evaluate, evaluate_subnet
from gtn_deploy.train.metrics import MetricsLog



class TeacherTrainer(Protocol):
    """What the outputs read of a finished ``train.trainer.TeacherTrainer`` (typed here,
    not imported: the trainer writes its outputs through this module)."""

    cfg: Any  # TrainConfig
    info: Any  # DistInfo
    data: Any  # TaskData
    plan: Any  # BatchPlan
    task: Any  # TaskSpec
    space: Any  # spaces.base.Space
    teacher: torch.nn.Module
    supernet: torch.nn.Module | None
    objective: Any  # TeacherObjective
    sampler: Any  # ArchSampler | None
    out: Path
    init_sha256: str
    total_steps: int

    @property
    def amp_dtype(self) -> torch.dtype | None: ...

SUMMARY_KIND = "gtn_deploy.teacher_run"


def write_config(trainer: "TeacherTrainer") -> None:
    info = trainer.info
    doc = {"schema_version": 1, "kind": "gtn_deploy.teacher_config",
           "config": trainer.cfg.to_dict(), "data": trainer.data.summary(),
           "init_teacher_sha256": trainer.init_sha256,
           "init_supernet": _supernet_init(trainer),
           "steps_per_epoch": trainer.plan.steps, "total_steps": trainer.total_steps,
           "world_size": info.world_size, "device": info.device,
           "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None,
           "branches": trainer.objective.branches.describe()
           if trainer.objective.uses_branches else [],
           "versions": {"gtn_deploy": __version__, "torch": torch.__version__,
                        "python": platform.python_version()}}
    atomic_write_json(trainer.out / "config.json", doc)


def _supernet_init(trainer: "TeacherTrainer") -> dict[str, Any] | None:
    """Where the student side's weights started (--supernet-init): the folder, its weights'
    sha256 and, for an imported supernet, the published file it came from."""
    doc = trainer.supernet_init
    if doc is None:
        return None
    return {"path": trainer.cfg.supernet_init, "sha256": doc["weights"]["sha256"],
            "source": doc.get("source")}


def finish_run(trainer: "TeacherTrainer", log: MetricsLog, train_time_s: float
               ) -> dict[str, Any]:
    """Final evaluations (all ranks), then rank 0 saves the models, sampler and summary."""
    t, cfg, info = trainer, trainer.cfg, trainer.info
    val = evaluate(t.teacher, t.data.val, t.task, info, amp_dtype=t.amp_dtype)
    test = evaluate(t.teacher, t.data.test, t.task, info, amp_dtype=t.amp_dtype)
    metrics = {"val_top1": val["top1"], "test_top1": test["top1"],
               "test_logit_std": test["logit_std"], "test_entropy": test["entropy"],
               "test_p_true": test["p_true"]}
    subnets = {}
    if t.supernet is not None:
        archs = {"max": t.space.max_arch(), "min": t.space.min_arch()}
        if cfg.method == "sftn":
            archs = {"student": cfg.student_arch()}
        for name, arch in archs.items():
            subnets[name] = {"arch": arch.summary(), **evaluate_subnet(
                t.supernet, arch, t.data.train, t.data.val, t.task, info)}
    summary = {"schema_version": 1, "kind": SUMMARY_KIND, "method": cfg.method,
               "teacher": cfg.teacher, "task": cfg.task, "epochs": cfg.epochs,
               "teacher_metrics": metrics, "supernet_val": subnets,
               "train_time_s": round(train_time_s, 3), "finished_at": time.time()}
    if info.is_main:
        _save_models(t, metrics, subnets)
        log.write({"event": "final", **metrics,
                   **{f"supernet_{k}_val_top1": v["top1"] for k, v in subnets.items()}})
        atomic_write_json(t.out / "summary.json", summary)
    return summary


def _save_models(t: "TeacherTrainer", metrics: dict, subnets: dict) -> None:
    meta = {"metrics": metrics, "method": t.cfg.method, "config": t.cfg.to_dict()}
    save_teacher(t.out / "teacher", t.teacher, t.cfg.teacher, t.task, meta)
    if t.supernet is not None:
        t.supernet.set_active(t.space.max_arch())
        save_supernet(t.out / "supernet", t.supernet,
                      {"metrics": {k: v["top1"] for k, v in subnets.items()},
                       "method": t.cfg.method, "config": t.cfg.to_dict()})
        atomic_write_json(t.out / "sampler.json", t.sampler.to_json())
