"""Teacher checkpoints: ``teacher.safetensors`` + ``teacher.json`` (name, task, metrics, meta).

A teacher is rebuilt from its registry name and task, then its tensors are checked and
loaded exactly as students are (``gtn_deploy.checkpoint_files``): no unpickling.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import nn

from gtn_deploy.arch import TaskSpec
from gtn_deploy.checkpoint_files import load_tensors, read_sidecar, read_weights, write_checkpoint
from gtn_deploy.errors import CheckpointError, GtnError
from gtn_deploy.models.registry import create_teacher

TEACHER_KIND = "gtn_deploy.teacher"
TEACHER_WEIGHTS, TEACHER_JSON = "teacher.safetensors", "teacher.json"


def save_teacher(directory: str | Path, model: nn.Module, name: str, task: TaskSpec,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write the teacher's weights and sidecar; ``meta['metrics']`` goes on top."""
    meta = dict(meta or {})
    doc = {"kind": TEACHER_KIND, "name": name, "task": dataclasses.asdict(task),
           "metrics": meta.pop("metrics", {}), "meta": meta}
    return write_checkpoint(directory, TEACHER_WEIGHTS, TEACHER_JSON, model, doc)


def _task_from_doc(data: Any, path: Path) -> TaskSpec:
    fields = {f.name for f in dataclasses.fields(TaskSpec)}
    if not isinstance(data, dict) or set(data) != fields:
        raise CheckpointError(f"{path}: 'task' must have the keys {sorted(fields)}")
    data = dict(data)
    data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
    return TaskSpec(**data)


def load_teacher(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the teacher from ``teacher.json`` and load its weights (eval mode)."""
    directory = Path(directory)
    doc = read_sidecar(directory, TEACHER_JSON, TEACHER_KIND)
    sidecar = directory / TEACHER_JSON
    task = _task_from_doc(doc.get("task"), sidecar)
    try:
        model = create_teacher(str(doc.get("name")), task)
    except GtnError as exc:
        raise CheckpointError(f"{sidecar}: {exc}") from None
    tensors = read_weights(directory, TEACHER_JSON, doc)
    load_tensors(model, tensors, directory / doc["weights"]["file"],
                 f"teacher '{doc['name']}' for {task.in_channels} input channels and "
                 f"{task.num_classes} classes")
    return model.eval(), doc
