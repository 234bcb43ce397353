"""The typed schema of a device profile file (pydantic v2; unknown keys are errors).

Kept apart from ``profiles`` (loading, lookup, the float accessors) so each stays small.
Cross-field rules that pydantic cannot place on a field path (sources that must exist,
the default power mode, the preferred precision) live in :func:`check_spec`, which returns
one ``path: reason`` line.
"""

from __future__ import annotations

import math

import types
import typing
from typing import Annotated, Any, Iterator, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
SOURCE_PREFIXES = ("derived:", "policy:", "measured:")

Precision = Literal["fp32", "fp16", "int8"]  # constants.PRECISIONS (a test keeps them equal)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Model):
    """A number and where it comes from: a ``sources`` key, or ``derived:/policy:/measured:``."""

    value: Annotated[float, Field(strict=True)]
    source: Annotated[str, Field(min_length=1)]

    def __float__(self) -> float:
        return float(self.value)


class SourcedInt(_Model):
    value: Annotated[int, Field(strict=True, ge=1)]
    source: Annotated[str, Field(min_length=1)]


def _positive(v: Sourced) -> Sourced:
    if not (v.value > 0 and math.isfinite(v.value)):  # YAML .inf and .nan too
        raise ValueError(f"value must be > 0 and finite, got {v.value}")
    return v


def _non_negative(v: Sourced) -> Sourced:
    if not v.value >= 0:
        raise ValueError(f"value must be >= 0, got {v.value}")
    return v


def _fraction(v: Sourced) -> Sourced:
    if not 0 < v.value <= 1:
        raise ValueError(f"value must be in (0, 1], got {v.value}")
    return v


Positive = Annotated[Sourced, AfterValidator(_positive)]
NonNegative = Annotated[Sourced, AfterValidator(_non_negative)]
Fraction = Annotated[Sourced, AfterValidator(_fraction)]
Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(default_factory=list)]


class Target(_Model):
    """How ``gtnd bench`` recognises the device; substrings match case-insensitively."""

    machine: Annotated[list[str], Field(min_length=1)]  # ``uname -m`` values
    cpu_model: Names
    gpu_name: Names
    device_model: Names  # /proc/device-tree/model (Jetson, Raspberry Pi)


class PowerMode(_Model):
    description: str = ""
    power_w: Positive | None = None
    clock_mhz: Positive | None = None  # the accelerator's (GPU, or CPU for CPU devices)
    dense_tops: Annotated[dict[Precision, Positive], Field(min_length=1)]  # T(FL)OP/s
    sparse_tops: dict[Precision, Positive] = Field(default_factory=dict)  # 2:4 sparsity
    memory_bandwidth_gbs: Positive | None = None  # when the mode caps the memory clock


class Compute(_Model):
    default_power_mode: str
    power_modes: Annotated[dict[str, PowerMode], Field(min_length=1)]


class Memory(_Model):
    size_gb: Positive
    bandwidth_gbs: Positive
    shared_with_cpu: bool


class Cpu(_Model):
    model: str
    cores: SourcedInt
    clock_ghz: Positive


class Runtime(_Model):
    name: Literal["tensorrt", "onnxruntime", "openvino"]
    version: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]
    provider: str | None = None  # onnxruntime execution provider, when it matters


class BudgetsSpec(_Model):
    latency_ms: Positive
    percentile: Annotated[str, Field(pattern=r"^p(50|90|95|99)$")]
    batch_size: SourcedInt
    memory_mb: Positive


class Efficiencies(_Model):
    """Fraction of the precision's peak each op class reaches at batch 1."""

    conv: Fraction
    pointwise: Fraction
    depthwise: Fraction
    se: Fraction
    linear: Fraction
    pool: Fraction
    elementwise: Fraction


class LatencyModelSpec(_Model):
    tier: Annotated[int, Field(strict=True, ge=0, le=2)] = 0
    efficiency: Efficiencies
    # Multiplies every op-class efficiency at that precision (absent: 1). Tensor-core peaks
    # grow 8-16x over FP32 but batch-1 kernels gain far less.
    precision_factors: dict[Precision, Fraction] = Field(default_factory=dict)
    memory_efficiency: Fraction
    kernel_overhead_us: NonNegative
    invoke_overhead_us: NonNegative
    expected_error: Positive  # relative half-width of the error band


class ProfileSpec(_Model):
    schema_version: Literal[1]
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    name: Annotated[str, Field(min_length=1)]
    kind: Literal["gpu", "cpu"]
    aliases: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]],
                       Field(default_factory=list)]
    description: str = ""
    sources: Annotated[dict[str, Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    target: Target
    compute: Compute
    memory: Memory
    cpu: Cpu | None = None  # None: a discrete card whose host is unknown
    runtime: Runtime
    budgets: BudgetsSpec
    precisions: Annotated[list[Precision], Field(min_length=1)]
    preferred_precision: Precision
    latency_model: LatencyModelSpec
    calibration: dict[str, Any] | None = None  # filled by on-device calibration


# -- checks pydantic cannot attach to one field -------------------------------------------------

def iter_sourced(obj: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(field path, source)`` for every sourced value (and the runtime's source)."""
    if isinstance(obj, (Sourced, SourcedInt)):
        yield path, obj.source
        return
    if isinstance(obj, BaseModel):
        if isinstance(obj, Runtime):
            yield f"{path}.source", obj.source
            return
        for name in type(obj).model_fields:
            yield from iter_sourced(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from iter_sourced(value, f"{path}.{key}")


def _source_problem(source: str, known: dict[str, str]) -> str | None:
    if source.startswith(SOURCE_PREFIXES):
        rest = source.split(":", 1)[1].strip()
        return None if rest else "a derived/policy/measured source needs its explanation"
    keys = [k.strip() for k in source.split(",")]
    unknown = [k for k in keys if k not in known]
    if unknown:
        return (f"unknown source key '{unknown[0]}'; known keys: {', '.join(known)} "
                f"(or start with {', '.join(repr(p) for p in SOURCE_PREFIXES)})")
    return None


def check_spec(spec: ProfileSpec) -> str | None:
    """The first cross-field problem as ``field.path: reason``, or None."""
    for path, source in iter_sourced(spec):
        problem = _source_problem(source, spec.sources)
        if problem:
            return f"{path.removesuffix('.source')}.source: {problem}"
    modes = spec.compute.power_modes
    if spec.compute.default_power_mode not in modes:
        return (f"compute.default_power_mode: '{spec.compute.default_power_mode}' is not "
                f"a power mode; valid: {', '.join(modes)}")
    if spec.preferred_precision not in spec.precisions:
        return (f"preferred_precision: '{spec.preferred_precision}' is not in precisions "
                f"({', '.join(spec.precisions)})")
    for name, mode in modes.items():
        for prec in spec.precisions:
            if prec not in mode.dense_tops:
                return (f"compute.power_modes.{name}.dense_tops: no {prec} peak, but "
                        f"precisions lists {prec}")
    for name, prec in ((f"latency_model.precision_factors.{p}", p)
                       for p in spec.latency_model.precision_factors):
        if prec not in spec.precisions:
            return f"{name}: {prec} is not in precisions ({', '.join(spec.precisions)})"
    lowered = [a.lower() for a in spec.aliases]
    if len(set(lowered)) != len(lowered) or spec.id in lowered:
        return "aliases: duplicate alias (or an alias equal to the id)"
    return None


# -- pydantic errors as one line ----------------------------------------------------------------

def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class whose field a pydantic error location points into."""
    current: Any = ProfileSpec
    for part in loc[:-1]:
        if isinstance(current, tuple):  # inside a dict: this part is a key
            current = current[0]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = _inner_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    """Unwrap Optional/Annotated/dict[str, M] to the model class (dicts as a 1-tuple)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _inner_model(typing.get_args(annotation)[0])
    if origin is dict:
        inner = _inner_model(typing.get_args(annotation)[1])
        return (inner,) if inner is not None else None
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _loc_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "lax-or-strict")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def validation_message(exc: ValidationError) -> str:
    """The first pydantic error as ``field.path: reason`` (+ how many more), one line."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(p for p in err["loc"] if not str(p).startswith(("function-", "lax-")))
    path = _loc_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc)
        allowed = f"; allowed: {', '.join(model.model_fields)}" if model else ""
        reason = f"unknown field '{loc[-1]}'{allowed}"
    elif kind == "missing":
        reason = "missing required field"
    else:
        reason = " ".join(str(err["msg"]).split())
        reason = reason.removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], (dict, list)):
            reason += f" (got {err['input']!r})"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{path}: {reason}{more}"
