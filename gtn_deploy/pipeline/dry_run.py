"""``gtnd pipeline --dry-run``: the stages a run would take, cached or pending, with times.

It walks the run's own stage list (``run.walk_stages``), so every folder it looks up is the
one the run would use, and builds nothing: nothing is trained, locked or written, and no
folder is made. A plan not yet cached is searched in memory (a second, no torch), because
the later stages' keys depend on the student it picks. Times: what a cached stage took; for
each training stage still to run, an estimate from a probe of a few timed steps on random
data (``estimate.probe``), which nothing keeps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from gtn_deploy.errors import GtnError
from gtn_deploy.pipeline.config import PipelineConfig
from gtn_deploy.pipeline.estimate import clock
from gtn_deploy.pipeline.run import (computed_plan, estimate_training, plan_inputs, prepare,
                                     walk_stages)
from gtn_deploy.pipeline.stages import MARKER, StageResult, StageStore, damage, read_marker
from gtn_deploy.pipeline.state import DeviceBranch, PipelineRun
from gtn_deploy.spaces.base import Space

TRAINING = ("teacher", "student-", "baseline-", "vanilla-")
ESTIMATE_NOTE = "a probe of timed steps here; evaluation, export and bench come on top"


@dataclass
class StagePlan:
    name: str
    folder: str  # stages/<name>-<hash of its inputs>, in the run folder
    # cached | started (a work folder with checkpoints: it resumes) | pending | damaged
    # (a finished folder whose marker or outputs changed: the run rebuilds it)
    status: str
    took_s: float | None = None  # a cached stage's recorded time
    estimated_s: float | None = None  # a training stage still to run

    @property
    def training(self) -> bool:
        return self.name.startswith(TRAINING)


def dry_run(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    """The stage plan of a run of ``cfg`` in ``out``, as a JSON-ready document."""
    space, branches = prepare(cfg, out)  # what the run checks first, checked the same
    run = PipelineRun(cfg, Path(out), branches, log=lambda line: None)
    store = StageStore(run.out, create=False)
    for b in branches:
        if not store.is_done(f"plan-{b.id}", plan_inputs(cfg, b)):
            b.device_plan = computed_plan(cfg, space, b)
    stages: list[StagePlan] = []
    walk_stages(run, space, _look_up(store, stages))
    note = _estimate(cfg, space, branches, stages)
    todo = [s for s in stages if s.status != "cached"]
    estimated = [s.estimated_s for s in todo if s.estimated_s is not None]
    return {"out_dir": str(out), "dry_run": True, "task": cfg.task, "quick": cfg.quick,
            "stages": [asdict(s) for s in stages],
            "stages_cached": len(stages) - len(todo), "stages_to_run": len(todo),
            "estimated_training_s": round(sum(estimated), 1) if estimated else None,
            "estimate_note": note}


def _look_up(store: StageStore, stages: list[StagePlan]) -> Callable[..., StageResult]:
    def look(name: str, inputs: dict, build, resumable: bool = False) -> StageResult:
        path = store.path(name, inputs)
        row = StagePlan(name, f"stages/{path.name}", "pending")
        problem = damage(path) if (path / MARKER).is_file() else None
        if problem is not None:
            row.status = "damaged (re-runs)"
        elif (path / MARKER).is_file():
            row.status = "cached"
            row.took_s = read_marker(path).get("seconds")
        elif resumable and store.work_folder(path).is_dir():
            row.status = "started"
        stages.append(row)
        return StageResult(name, path, False, row.took_s or 0.0)

    return look


def _estimate(cfg: PipelineConfig, space: Space, branches: list[DeviceBranch],
              stages: list[StagePlan]) -> str | None:
    """Fill in the estimates of the training stages still to run; the note says how they
    were made, or why there are none. No probe when every training stage is cached."""
    todo = [s for s in stages if s.training and s.status != "cached"]
    if not todo:
        return None
    try:
        est = estimate_training(cfg, space, branches)
    except (GtnError, ImportError) as exc:  # no data here, or no torch
        return f"no estimate: {exc}"
    for s in todo:  # a started stage is estimated whole: its checkpoints are not counted
        s.estimated_s = round(est["teacher_s"] if s.name == "teacher"
                              else est["vanilla_teacher_s"] if s.name == "teacher-vanilla"
                              else est["student_run_s"][s.name.split("-", 1)[1]], 1)
    return ESTIMATE_NOTE


def format_dry_run(doc: dict) -> str:
    """A table of the stages and one closing line."""
    rows = [("stage", "status", "time")]
    for s in doc["stages"]:
        if s["took_s"] is not None:
            time = f"took {clock(s['took_s'])}"
        elif s["estimated_s"] is not None:
            time = f"~{clock(s['estimated_s'])} (estimate)"
        else:
            time = "-"
        rows.append((s["name"], s["status"], time))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"dry run of {doc['out_dir']} ({doc['task']}, "
             f"{'quick' if doc['quick'] else 'full'}): nothing is trained or written"]
    lines += ["  " + "  ".join((r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2]))
              for r in rows]
    total = len(doc["stages"])
    end = f"{doc['stages_cached']} of {total} stages cached, {doc['stages_to_run']} to run"
    if doc["estimated_training_s"] is not None:
        end += f"; training about {clock(doc['estimated_training_s'])} ({doc['estimate_note']})"
    elif doc["estimate_note"]:
        end += f"; {doc['estimate_note']}"
    return "\n".join(lines + [end])
