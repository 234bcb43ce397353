"""What a pipeline run holds while it runs and what its report reads: the run, and per device
its branch of stage results (the runner fills them; the report and the dry run read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gtn_deploy.pipeline.config import PipelineConfig
from gtn_deploy.pipeline.stages import StageResult
from gtn_deploy.plan_file import DevicePlan, load_plan
from gtn_deploy.spaces.base import Arch


@dataclass
class DeviceBranch:
    target: Any  # DeviceTarget
    profile: Any  # DeviceProfile
    plan: StageResult | None = None
    student: StageResult | None = None
    baseline: StageResult | None = None  # the same student trained with plain CE
    vanilla: StageResult | None = None  # the same student distilled from a vanilla teacher
    bundle: StageResult | None = None
    bench: StageResult | None = None
    runs_here: bool = False
    device_plan: DevicePlan | None = None  # the plan's entry: read once, or computed (dry run)

    @property
    def id(self) -> str:
        return self.profile.id

    def planned(self) -> DevicePlan:
        if self.device_plan is None:
            self.device_plan = load_plan(self.plan.path / "plan.json").devices[0]
        return self.device_plan

    def arch(self) -> Arch:
        return self.planned().best.arch


@dataclass
class PipelineRun:
    cfg: PipelineConfig
    out: Path
    branches: list[DeviceBranch]
    teacher: StageResult | None = None
    vanilla_teacher: StageResult | None = None  # --baseline vanilla: the control teacher
    log: Callable[[str], None] = print
    stages_run: list[str] = field(default_factory=list)
    stages: Any = None  # progress.StageList: the stage list, live on a terminal
