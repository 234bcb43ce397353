"""plan.json as a typed document, with one loader (json only: no torch).

``gtnd plan`` and the pipeline write it (``search.planner.plan_document``); teacher
training, distillation, the pipeline and its report read it through ``load_plan``, which
checks the kind and the schema version (an older or a newer file each get their own line)
and validates every field a reader uses, naming the one that is wrong. The parsed types keep
the entry they came from (``doc``) for fields only the report shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy.errors import ArchError, CheckpointError, UsageError
from gtn_deploy.io_utils import read_regular_file
from gtn_deploy.spaces import DEFAULT_FAMILY, FAMILIES, create_space, family_of, space_by_name
from gtn_deploy.spaces.base import Arch, Space

PLAN_KIND = "gtn_deploy.plan"
PLAN_SCHEMA_VERSION = 1
MAX_PLAN_BYTES = 16 << 20  # a plan of many devices is a few hundred KB


@dataclass(frozen=True)
class PlanCandidate:
    """One candidate of a device's plan: the subnet and what the planner predicted for it."""

    arch: Arch
    latency_ms: float | None  # None in a hand-written plan, which may list archs only
    mflops: float | None
    params: int | None
    doc: dict[str, Any]


@dataclass(frozen=True)
class DevicePlan:
    """A device's entry: its budget and candidates, best first."""

    device: str
    precision: str | None
    budget_ms: float | None  # the latency budget it was planned under; None if hand-written
    candidates: tuple[PlanCandidate, ...]
    doc: dict[str, Any]

    @property
    def best(self) -> PlanCandidate:
        return self.candidates[0]


@dataclass(frozen=True)
class Plan:
    task: str
    space: str
    family: str
    devices: tuple[DevicePlan, ...]

    def students(self) -> list[Arch]:
        """Every candidate's arch, devices in order, candidates in order."""
        return [c.arch for d in self.devices for c in d.candidates]


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; every problem is one CheckpointError line."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"plan file {path} does not exist (write one with 'gtnd plan')")
    raw = read_regular_file(path, MAX_PLAN_BYTES, "plan file", CheckpointError)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"plan file {path} is not valid JSON "
                              f"({str(exc)[:120] or type(exc).__name__})") from None
    return parse_plan(doc, str(path))


def parse_plan(doc: Any, where: str = "plan") -> Plan:
    if not isinstance(doc, dict) or doc.get("kind") != PLAN_KIND:
        raise CheckpointError(f"{where} is not a gtn_deploy plan (kind must be '{PLAN_KIND}')")
    _check_version(doc.get("schema_version"), where)
    family = str(doc.get("family", DEFAULT_FAMILY))
    if family not in FAMILIES:  # the plan's own field, not a flag the user gave
        raise CheckpointError(f"{where}: family '{family}' is not one this gtn_deploy knows "
                              f"(valid: {', '.join(FAMILIES)})")
    try:  # plans from before the second family name none: theirs is the first
        space = create_space(family, str(doc.get("task")))
    except UsageError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    space = _named_space(doc.get("space", space.name), space)
    if doc.get("space", space.name) != space.name:
        raise CheckpointError(f"{where}: space '{doc.get('space')}' contradicts its task "
                              f"'{doc.get('task')}', whose space is '{space.name}'")
    devices = doc.get("devices")
    if not isinstance(devices, list) or not devices:
        raise CheckpointError(f"{where}: devices must be a non-empty list")
    plan = Plan(space.task.name, space.name, space.family,
                tuple(_device(d, space, f"{where}: devices[{i}]") for i, d in enumerate(devices)))
    if not plan.students():
        raise CheckpointError(f"{where} has no candidates")
    return plan


def _named_space(name: Any, default):
    """A plan of a space that is not its task's default (an imported supernet's, such as
    ``imagenet-w1.2``) names it; it must be of the plan's task and family."""
    if name == default.name:
        return default
    try:
        named = space_by_name(str(name))
    except UsageError:
        return default  # the caller reports the contradiction
    same = named.task.name == default.task.name and family_of(named) is family_of(default)
    return named if same else default


def _check_version(version: Any, where: str) -> None:
    if version == PLAN_SCHEMA_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version > PLAN_SCHEMA_VERSION:
        raise CheckpointError(f"{where} has schema_version {version}, newer than this "
                              f"gtn_deploy reads ({PLAN_SCHEMA_VERSION}): upgrade gtn_deploy")
    raise CheckpointError(f"{where} has schema_version {version!r}; this gtn_deploy reads "
                          f"{PLAN_SCHEMA_VERSION} (re-run 'gtnd plan')")


def _device(doc: Any, space: Space, where: str) -> DevicePlan:
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where} is not an object")
    budget = doc.get("budget")
    if budget is not None and not isinstance(budget, dict):
        raise CheckpointError(f"{where}.budget must be an object")
    budget_ms = _optional(budget or {}, "latency_ms", f"{where}.budget")
    if budget_ms is not None and budget_ms <= 0:
        raise CheckpointError(f"{where}.budget.latency_ms must be > 0")
    cands = doc.get("candidates")
    if not isinstance(cands, list):
        raise CheckpointError(f"{where}.candidates must be a list")
    precision = doc.get("precision")
    return DevicePlan(str(doc.get("device", where.rpartition(": ")[2])),
                      None if precision is None else str(precision), budget_ms,
                      tuple(_student(c, space, f"{where}.candidates[{k}]")
                            for k, c in enumerate(cands)), doc)


def _student(doc: Any, space: Space, where: str) -> PlanCandidate:
    if not isinstance(doc, dict) or not isinstance(doc.get("arch"), dict):
        raise CheckpointError(f"{where}.arch is missing")
    try:
        arch = space.validate(space.arch_from_dict(doc["arch"], f"{where}.arch"))
    except ArchError as exc:
        raise CheckpointError(f"{where}.arch: {exc}") from None
    params = _optional(doc, "params", where)
    return PlanCandidate(arch, _optional(doc, "latency_ms", where), _optional(doc, "mflops", where),
                         None if params is None else int(params), doc)


def _optional(doc: dict, key: str, where: str) -> float | None:
    """A number the planner writes; absent (None) in a hand-written plan, never wrong."""
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise CheckpointError(f"{where}.{key} must be a number, not {value!r}")
    return float(value)
