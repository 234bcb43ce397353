"""The settings of one pipeline run: typed, from a YAML run file and/or flags.

Precedence: CLI flag > run file > the defaults of the mode (``quick`` or full). The resolved
config is written beside the run as ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gtn_deploy.checks import MAX_SEED
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import read_regular_file
from gtn_deploy.spaces import DEFAULT_FAMILY, FAMILIES, create_space
from gtn_deploy.yaml_data import load_yaml, yaml_error_line


class DeviceTarget(BaseModel):
    """A device of the run; budgets default to its profile's (scaled to the task)."""

    model_config = ConfigDict(extra="forbid")
    device: str
    latency_ms: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    memory_mb: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    precision: Optional[Literal["fp32", "fp16", "int8"]] = None


# Settings that differ between the --quick main job (minutes on 2 CPU cores) and a full run.
# quick (docs/results.md, "The main job"; no results file compares other quick settings):
# the teacher sees every training image once; each student starts from the GTN-trained supernet and takes one KD epoch over
# a subset, without augmentation so that KD reads the teacher's logits from a table.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "quick": {"teacher": "resnet20", "teacher_epochs": 1, "distill_epochs": 1,
              "limit_train": None, "distill_limit_train": 24000, "limit_val": 2000,
              "batch_size": 128, "distill_batch_size": 64, "distill_lr": 0.05,
              "augment": False, "bench_iters": 2000, "eval_images": 2000},
    "full": {"teacher": "resnet20", "teacher_epochs": 15, "distill_epochs": 8,
             "limit_train": None, "distill_limit_train": None, "limit_val": None,
             "batch_size": 128, "distill_batch_size": 128, "distill_lr": 0.05,
             "augment": True, "bench_iters": 2000, "eval_images": None},
}


# each device is a plan, a student, a bundle and a bench: far past this is a mistake
MAX_DEVICES = 32


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: list[DeviceTarget]
    task: str = "fashion-mnist"
    space: str = DEFAULT_FAMILY  # the network family searched, trained and shipped
    quick: bool = False
    data_dir: Optional[str] = None
    seed: int = Field(default=0, ge=0, le=MAX_SEED)  # torch.manual_seed's range
    # Plan
    scale_budget: bool = True  # profile budgets are for ImageNet-sized inputs
    margin: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False)
    # Teacher (GTN)
    teacher: Optional[str] = None
    teacher_epochs: Optional[int] = Field(default=None, ge=1)
    sampler: Literal["uniform", "sandwich", "learned", "pool"] = "learned"
    # Distil and export
    distill_epochs: Optional[int] = Field(default=None, ge=1)
    init: Literal["scratch", "supernet"] = "supernet"
    alpha: float = Field(default=0.9, ge=0, le=1, allow_inf_nan=False)
    temperature: float = Field(default=4.0, gt=0, allow_inf_nan=False)
    kd_loss: Literal["kd", "dkd"] = "kd"  # train.losses.KD_LOSSES
    dkd_beta: float = Field(default=8.0, ge=0, allow_inf_nan=False)
    # What each device's KD student is set against (same arch, data, epochs and
    # initialisation): ce, the student trained with plain CE (what the teacher added);
    # vanilla, the student distilled from a vanilla teacher of the same network, epochs and
    # data (what the generic teacher added). () or "none": neither.
    baseline: tuple[Literal["ce", "vanilla"], ...] = ("ce",)
    augment: Optional[bool] = None
    limit_train: Optional[int] = Field(default=None, ge=100)
    distill_limit_train: Optional[int] = Field(default=None, ge=100)
    limit_val: Optional[int] = Field(default=None, ge=100)
    batch_size: Optional[int] = Field(default=None, ge=8)
    distill_batch_size: Optional[int] = Field(default=None, ge=8)
    distill_lr: Optional[float] = Field(default=None, gt=0, allow_inf_nan=False)
    int8: Optional[bool] = None  # None: where the device profile lists int8
    eval_images: Optional[int] = Field(default=None, ge=256)
    bench_iters: Optional[int] = Field(default=None, ge=10)

    @field_validator("baseline", mode="before")
    @classmethod
    def _baseline(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [] if value.strip() == "none" else \
                [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            bad = [v for v in value if v not in BASELINES]
            if bad:
                raise ValueError(f"unknown baseline '{bad[0]}'; valid: a comma list of "
                                 f"{', '.join(BASELINES)}, or none")
            return tuple(dict.fromkeys(value))  # in order, once each
        return value

    @field_validator("space")
    @classmethod
    def _space(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown family '{value}'; valid: {', '.join(FAMILIES)}")
        return value

    def search_space(self):
        """The space of the run's family for its task."""
        return create_space(self.space, self.task)

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError(f"expected a list of devices or 'a,b,c', got {value!r:.60}")
        if len(value) > MAX_DEVICES:
            raise ValueError(f"{len(value)} devices; a run takes at most {MAX_DEVICES}")
        value = [{"device": v} if isinstance(v, str) else v for v in value]
        names = [v.get("device") for v in value if isinstance(v, dict)]
        twice = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
        if twice:
            raise ValueError(f"device '{twice[0]}' is named twice; name each device once")
        return value

    def resolved(self) -> "PipelineConfig":
        """Fill every unset mode-dependent setting from the mode's defaults."""
        defaults = MODE_DEFAULTS["quick" if self.quick else "full"]
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.model_copy(update=updates)


BASELINES = ("ce", "vanilla")
MAX_RUN_FILE_BYTES = 1 << 20


def _read_run_file(path: Path) -> Any:
    """The run file's YAML: a regular UTF-8 file of bounded size, no key given twice."""
    raw = read_regular_file(path, MAX_RUN_FILE_BYTES, "run file", UsageError)
    try:
        return load_yaml(raw.decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise UsageError(f"run file {path} is not UTF-8 text (a binary file?)") from None
    except yaml.YAMLError as exc:
        raise UsageError(yaml_error_line(exc, str(path))) from None


def load_config(path: Optional[Path], overrides: dict[str, Any]) -> PipelineConfig:
    """Read a run file (YAML, data only) and apply the CLI flags that were given."""
    data: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        where = str(path)
        data = _read_run_file(Path(path))
        if not isinstance(data, dict):
            raise UsageError(f"{path}: a run file is a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("devices"):
        raise UsageError("give the devices: --devices a,b,c or 'devices:' in the run file")
    try:
        return PipelineConfig(**data).resolved()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")  # our validators' own words
        raise UsageError(f"{where}: {field}: {message}") from None
