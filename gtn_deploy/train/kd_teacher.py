"""The teacher side of distillation: open a teacher run folder, check plans against it.

A teacher folder is what ``gtnd teacher train`` writes (``DIR/teacher/teacher.json`` and, for
gtn / sftn, ``DIR/supernet/supernet.json``); a bare ``teacher/`` folder is accepted too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.models import load_teacher
from gtn_deploy.models.checkpoint import TEACHER_JSON
from gtn_deploy.plan_file import load_plan
from gtn_deploy.spaces import space_by_name
from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.supernet import load_supernet
from gtn_deploy.supernet.checkpoint import SUPERNET_JSON


@dataclass(frozen=True)
class TeacherSource:
    """Where a teacher lives and what it is; the weights are loaded on demand."""

    run_dir: Path
    teacher_dir: Path
    supernet_dir: Path | None
    name: str
    task: str
    method: str
    sha256: str
    metrics: dict

    def describe(self) -> dict[str, Any]:
        """What a student records about the teacher it learned from."""
        return {"dir": str(self.run_dir), "name": self.name, "method": self.method,
                "task": self.task, "sha256": self.sha256, "metrics": self.metrics}

    def load(self):
        """The frozen teacher module (eval mode, no gradients)."""
        model, _ = load_teacher(self.teacher_dir)
        for p in model.parameters():
            p.requires_grad_(False)
        return model.eval()

    def load_supernet(self):
        if self.supernet_dir is None:  # no advice here: distill and predictor fit differ
            raise UsageError(f"teacher {self.run_dir} has no trained supernet (method "
                             f"'{self.method}'; gtn and sftn runs train one)")
        net, _ = load_supernet(self.supernet_dir)
        return net


def open_teacher(path: str | Path) -> TeacherSource:
    """Read a teacher run folder's sidecars; a folder without a teacher is a CheckpointError."""
    run = Path(path)
    if not run.is_dir():
        raise CheckpointError(f"teacher folder {run} does not exist (train one with "
                              "'gtnd teacher train')")
    teacher_dir = run if (run / TEACHER_JSON).is_file() else run / "teacher"
    if not (teacher_dir / TEACHER_JSON).is_file():
        raise CheckpointError(f"{run} holds no teacher: expected {run / 'teacher' / TEACHER_JSON}"
                              " (written by 'gtnd teacher train' when it finishes)")
    doc = _read_json(teacher_dir / TEACHER_JSON)
    supernet_dir = run / "supernet" if (run / "supernet" / SUPERNET_JSON).is_file() else None
    task = doc.get("task", {}).get("name") if isinstance(doc.get("task"), dict) else None
    sha = (doc.get("weights") or {}).get("sha256")
    if not task or not sha:
        raise CheckpointError(f"{teacher_dir / TEACHER_JSON}: missing task name or weights "
                              "sha256")
    meta = doc.get("meta") or {}
    return TeacherSource(run, teacher_dir, supernet_dir, str(doc.get("name")), task,
                         str(meta.get("method", "unknown")), sha, doc.get("metrics") or {})


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return doc


def supernet_space(source: TeacherSource) -> str | None:
    """The space name of the teacher's supernet, if it has one."""
    if source.supernet_dir is None:
        return None
    return _read_json(source.supernet_dir / SUPERNET_JSON).get("space")


@dataclass(frozen=True)
class PlannedStudent:
    """One candidate of a plan: K is its index over all devices in order."""

    index: int
    device: str
    arch: Arch

    @property
    def id(self) -> str:
        return f"c{self.index}"


def plan_students(path: str | Path, teacher: TeacherSource | None,
                  candidate: str = "all") -> tuple[Space, list[PlannedStudent]]:
    """The plan's candidates to distil (``candidate``: ``all`` or K), checked against the
    teacher's task and supernet space."""
    plan = load_plan(path)
    if teacher is not None:
        if plan.task != teacher.task:
            raise UsageError(f"plan {path} is for task '{plan.task}' but the teacher in "
                             f"{teacher.run_dir} was trained for task '{teacher.task}'")
        trained = supernet_space(teacher)
        if trained is not None and plan.space != trained:
            raise UsageError(f"plan {path} is for space '{plan.space}' but the teacher's "
                             f"supernet in {teacher.run_dir} is of space '{trained}'")
    pairs = [(d.device, c.arch) for d in plan.devices for c in d.candidates]
    students = [PlannedStudent(k, dev, a) for k, (dev, a) in enumerate(pairs)]
    return space_by_name(plan.space), _select(students, candidate, path)


def _select(students: list[PlannedStudent], candidate: str, path) -> list[PlannedStudent]:
    if candidate == "all":
        return students
    picked = []
    for part in str(candidate).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= len(students):
            raise UsageError(f"--candidate {part}: plan {path} has {len(students)} candidates "
                             f"(valid: 0..{len(students) - 1} or 'all')")
        if students[int(part)] in picked:  # checked now, not after training the first one
            raise UsageError(f"--candidate {candidate}: candidate {int(part)} is given twice")
        picked.append(students[int(part)])
    return picked
