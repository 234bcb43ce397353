"""Student and supernet checkpoints (the shared file format: ``gtn_deploy.checkpoint_files``).

A student folder holds ``weights.safetensors`` and ``student.json`` (schema version, kind,
space/task, arch, metrics, meta, the weights' sha256). The network is rebuilt from the arch
alone, then the tensors are checked name by name and shape by shape. Each file is written
atomically and the sidecar last, so a crash leaves either the old checkpoint or a sidecar
whose sha256 does not match the weights, which loading reports.
A supernet folder holds ``supernet.safetensors`` + ``supernet.json`` (teachers:
``gtn_deploy.models.checkpoint``), so the three kinds can share one folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.errors import ArchError, CheckpointError, UsageError
from gtn_deploy.checkpoint_files import (load_tensors, read_sidecar, read_weights,
                                         write_checkpoint)
from gtn_deploy.spaces import space_by_name
from gtn_deploy.supernet.families import build_student, create_supernet

STUDENT_KIND, SUPERNET_KIND = "gtn_deploy.student", "gtn_deploy.supernet"
STUDENT_WEIGHTS, STUDENT_JSON = "weights.safetensors", "student.json"
SUPERNET_WEIGHTS, SUPERNET_JSON = "supernet.safetensors", "supernet.json"


def _resolve_space(space: str | Space, num_classes: int) -> Space:
    if isinstance(space, str):
        space = space_by_name(space)
    if space.task.num_classes != num_classes:
        space = space.with_classes(num_classes)
    return space


def _space_from_doc(doc: dict[str, Any], path: Path) -> Space:
    name, classes = doc.get("space"), doc.get("num_classes")
    if not isinstance(classes, int) or classes < 1:
        raise CheckpointError(f"{path}: num_classes must be a positive integer, got {classes!r}")
    try:
        return _resolve_space(str(name), classes)
    except UsageError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _num_classes(model: nn.Module) -> int:
    return int(model.head.classifier.out_features)


# -- students -----------------------------------------------------------------------------------
def save_student(directory: str | Path, model: nn.Module, arch: Arch,
                 space: str | Space, meta: dict[str, Any] | None = None) -> Path:
    """Write ``weights.safetensors`` + ``student.json``; ``meta['metrics']`` goes on top."""
    space = _resolve_space(space, _num_classes(model))
    space.validate(arch)
    if getattr(model, "arch", arch) != arch:
        raise UsageError(f"the model is {model.arch.summary()} but arch says {arch.summary()}")
    meta = dict(meta or {})
    doc = {"kind": STUDENT_KIND, "space": space.name, "task": space.task.name,
           "in_channels": space.task.in_channels, "num_classes": space.task.num_classes,
           "arch": arch.to_dict(), "arch_summary": arch.summary(),
           "metrics": meta.pop("metrics", {}), "meta": meta}
    return write_checkpoint(directory, STUDENT_WEIGHTS, STUDENT_JSON, model, doc)


def load_student(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the student from ``student.json``'s arch and load its weights (eval mode)."""
    directory = Path(directory)
    doc = read_sidecar(directory, STUDENT_JSON, STUDENT_KIND)
    sidecar = directory / STUDENT_JSON
    space = _space_from_doc(doc, sidecar)
    try:
        arch = space.validate(space.arch_from_dict(doc.get("arch") or {}, f"{sidecar}: arch"))
    except ArchError as exc:
        raise CheckpointError(f"{sidecar}: {exc}") from None
    tensors = read_weights(directory, STUDENT_JSON, doc)
    model = build_student(space, arch)
    load_tensors(model, tensors, directory / doc["weights"]["file"],
                 f"the arch in {STUDENT_JSON} ({arch.summary()})")
    return model.eval(), doc


# -- supernets ---------------------------------------------------------------------------------
def save_supernet(directory: str | Path, supernet: nn.Module,
                  meta: dict[str, Any] | None = None,
                  source: dict[str, Any] | None = None) -> Path:
    """Write ``supernet.safetensors`` + ``supernet.json`` (space, classes, kernel transform;
    ``source``: where imported weights came from, ``gtn_deploy.supernet.ofa_import``)."""
    space = supernet.space
    meta = dict(meta or {})
    doc = {"kind": SUPERNET_KIND, "space": space.name, "task": space.task.name,
           "in_channels": space.task.in_channels, "num_classes": space.task.num_classes,
           "kernel_transform": bool(getattr(supernet, "kernel_transform", False)),
           "active_arch": supernet.active_arch.to_dict(),
           "metrics": meta.pop("metrics", {}), "meta": meta}
    if source is not None:
        doc["source"] = source
    return write_checkpoint(directory, SUPERNET_WEIGHTS, SUPERNET_JSON, supernet, doc)


def load_supernet(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the supernet from ``supernet.json`` and load its weights (eval mode, with the
    active arch it was saved with)."""
    directory = Path(directory)
    doc = read_sidecar(directory, SUPERNET_JSON, SUPERNET_KIND)
    space = _space_from_doc(doc, directory / SUPERNET_JSON)
    tensors = read_weights(directory, SUPERNET_JSON, doc)
    net = create_supernet(space, kernel_transform=bool(doc.get("kernel_transform", False)))
    load_tensors(net, tensors, directory / doc["weights"]["file"],
                 f"the supernet of space '{space.name}' in {SUPERNET_JSON}")
    if doc.get("active_arch"):
        sidecar = directory / SUPERNET_JSON
        try:
            net.set_active(space.arch_from_dict(doc["active_arch"], f"{sidecar}: active_arch"))
        except ArchError as exc:
            raise CheckpointError(f"{sidecar}: {exc}") from None
    return net.eval(), doc
