"""Distil several planned students in one command; under torchrun the ranks share them.

Students are dealt round-robin (rank r takes candidates r, r + W, ...); each is trained whole
by one process, so no DDP is needed. Each goes to ``OUT/c<K>/`` where K is its index in the
plan's flattened candidate list (devices in order, candidates in order: the same K as
``plan.json:K`` in ``gtnd teacher train --student``). Rank 0 writes ``OUT/index.json`` last.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import atomic_write_json, ensure_writable_dir
from gtn_deploy.train.distill import KDConfig, distill_student, validate_kd
from gtn_deploy.train.distributed import barrier, init_distributed, shutdown
from gtn_deploy.train.kd_teacher import open_teacher, plan_students

INDEX_KIND = "gtn_deploy.student_index"


def distill_plan(plan: str | Path, teacher: str | Path | None, cfg: KDConfig,
                 out: str | Path, candidate: str = "all", resume: bool = False,
                 device: str = "auto") -> dict[str, Any]:
    """Distil the chosen candidates of ``plan`` from the teacher folder (None: CE only)."""
    source = open_teacher(teacher) if teacher is not None else None
    space, students = plan_students(plan, source, candidate)
    cfg = validate_kd(dataclasses.replace(cfg, task=space.task.name, space=space.family))
    if cfg.init == "supernet" and source is not None and source.supernet_dir is None:
        raise UsageError(f"teacher {source.run_dir} has no trained supernet (method "
                         f"'{source.method}'); use --init scratch")
    info = init_distributed(device)
    out = Path(out)
    done = []
    try:
        if info.is_main:  # before the first student trains, not at its first checkpoint
            ensure_writable_dir(out)
        for student in students[info.rank::info.world_size]:
            label = {"candidate": student.index, "device": student.device, "plan": str(plan)}
            summary = distill_student(cfg, student.arch, out / student.id, source, resume,
                                      info.device, label=label)
            done.append(summary)
        gathered = _gather(done, info)
        if info.is_main:
            index = {"schema_version": 1, "kind": INDEX_KIND, "plan": str(plan),
                     "teacher": source.describe() if source else None, "config": cfg.to_dict(),
                     "students": sorted(gathered, key=lambda s: s["label"]["candidate"])}
            atomic_write_json(out / "index.json", _slim(index))
        barrier(info)  # rank 0 writes the index after the last collective
    finally:
        shutdown(info)
    return {"students": sorted(gathered, key=lambda s: s["label"]["candidate"]),
            "rank": info.rank}


def _gather(items: list, info) -> list:
    if not info.enabled:
        return list(items)
    import torch.distributed as dist

    boxes: list = [None] * info.world_size
    dist.all_gather_object(boxes, items)
    return [s for box in boxes for s in box]


def _slim(index: dict) -> dict:
    keep = ("id", "label", "arch_summary", "method", "init", "metrics", "train_time_s")
    index["students"] = [{k: s.get(k) for k in keep} for s in index["students"]]
    return index
