"""Which runtime ``gtnd calibrate`` measures with: the profile's (``runtimes.runtime_for``).

A profile names its runtime (``runtime.name``, ``runtime.version``) and the provider or device
it runs on (``runtime.provider``: onnxruntime's execution provider, a ``kind: gpu`` profile
naming none meaning CUDA; OpenVINO's device, CPU by default). Calibration measures with
exactly that, at the profile's preferred precision where calibration can measure it (each
runtime's ``calibration_precisions``):

- onnxruntime, any provider the profile names: fp32 (tier 2 too on the CPU provider).
- TensorRT: fp16 (or fp32), one engine per subnet from the export path's builder.
- OpenVINO: fp32 on its device (tier 1 only: tier 2 is onnxruntime's node profiler).
- int8 on any: refused (``NOT_INT8`` says why).

``--runtime onnxruntime-cpu`` measures with onnxruntime's CPU provider instead where the
profile's runtime is missing, ``--runtime openvino`` with OpenVINO on the CPU; the
calibration then records the deviation (none where it is the profile's own runtime).

On another machine (``gtnd calibrate --host``) calibration measures with onnxruntime only
(the device runs a standalone script with onnxruntime and numpy), and whether the provider is
there is checked there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtn_deploy.constants import PRECISIONS
from gtn_deploy.errors import MissingDependencyError, UsageError
from gtn_deploy.machine import tensorrt_version
from gtn_deploy.runtimes import RUNTIMES, Runner, runtime_for
from gtn_deploy.runtimes.onnxruntime import CPU, CUDA
from gtn_deploy.runtimes.tensorrt import INSTALL as _TRT_INSTALL, generation, parse_version

__all__ = ["CPU", "CUDA", "CalibrationRunner", "MEASURED", "NOT_INT8", "OVERRIDES",
           "calibration_runner"]

# --runtime NAME: (runtime, provider, how the deviation names it)
_OVERRIDE_RUNS = {"onnxruntime-cpu": ("onnxruntime", CPU, "onnxruntime's CPU provider"),
                  "openvino": ("openvino", "CPU", "OpenVINO on the CPU")}
OVERRIDES = tuple(_OVERRIDE_RUNS)
MEASURED = {name: rt.calibration_precisions for name, rt in RUNTIMES.items()}
NOT_INT8 = ("int8 is not calibrated: an int8 model is quantised on real data (the bundle's "
            "NNCF Q/DQ model), and calibration subnets have random weights and no data, so "
            "its timings would come from a model no bundle ships")
_PROVIDER_INSTALL = {CUDA: "pip install onnxruntime-gpu",
                     "TensorrtExecutionProvider": "pip install onnxruntime-gpu (with TensorRT)",
                     "OpenVINOExecutionProvider": "pip install onnxruntime-openvino"}
_OR_OVERRIDE = ("or pass --runtime onnxruntime-cpu to measure with onnxruntime's CPU provider "
                "instead (recorded in the profile as a deviation)")


@dataclass(frozen=True)
class CalibrationRunner:
    """How each calibration subnet runs: runtime, provider, precision (and any deviation)."""

    runtime: str  # a name of runtimes.RUNTIMES
    provider: str | None  # onnxruntime's execution provider, OpenVINO's device; None for TensorRT
    precision: str
    deviation: str | None = None  # why this is not the profile's own runtime
    notes: tuple[str, ...] = field(default=())

    @property
    def tier2_unavailable(self) -> str | None:
        """Why tier 2 (onnxruntime's node profiler) cannot be fitted here; None if it can."""
        return runtime_for(self.runtime).tier2_unavailable(self.provider)

    @property
    def threaded(self) -> bool:
        """Whether the runtime takes a thread count (then it is part of the fingerprint)."""
        return runtime_for(self.runtime).threaded

    def make(self, onnx_path: Path, input_shape: tuple[int, ...], threads: int) -> Runner:
        return runtime_for(self.runtime).session(onnx_path, threads, self.precision,
                                                 provider=self.provider,
                                                 input_shape=input_shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.runtime, "provider": self.provider, "precision": self.precision,
                "tier2": self.tier2_unavailable is None, "deviation": self.deviation,
                "notes": list(self.notes)}


def calibration_runner(profile, precision: str | None = None,
                       override: str | None = None, here: bool = True) -> CalibrationRunner:
    """The runtime and precision calibration measures ``profile`` with, checked to run here
    (else one line naming what is missing and how to get it); ``here=False``: on another
    machine, onnxruntime only, unchecked (the device checks its provider itself)."""
    rt = profile.runtime
    own = runtime_for(rt.name)
    own_provider = own.default_provider(profile)
    name, provider, deviation = own.name, own_provider, None
    if override is not None:
        if override not in OVERRIDES:
            raise UsageError(f"--runtime {override}: valid: {', '.join(OVERRIDES)}")
        name, provider, words = _OVERRIDE_RUNS[override]
        if (name, provider) != (own.name, own_provider):
            deviation = (f"measured with {words} (--runtime {override}), not the profile's "
                         f"{own.label_with(rt.version, own_provider)}")
    if not here and name != "onnxruntime":
        what = (f"--runtime {override}" if override is not None
                else f"device '{profile.id}' runs {rt.name}")
        raise UsageError(f"{what}; --host measures with onnxruntime on the device (a "
                         f"standalone script, no {name}); {_OR_OVERRIDE}")
    chosen, notes = _precision(profile, name, precision)
    runner = CalibrationRunner(name, provider, chosen, deviation, notes)
    return _checked(runner, profile) if here else runner


def _precision(profile, runtime: str, precision: str | None) -> tuple[str, tuple[str, ...]]:
    """The asked precision, checked; or the profile's preferred where calibration measures
    it, else the first the runtime measures that the profile runs."""
    if precision is not None and precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    measurable = [p for p in MEASURED[runtime] if p in profile.precisions]
    if precision is None:
        preferred = profile.preferred_precision
        if preferred in measurable:
            return preferred, ()
        if not measurable:
            raise UsageError(f"device '{profile.id}' runs {', '.join(profile.precisions)}; "
                             f"calibration with {runtime} measures "
                             f"{', '.join(MEASURED[runtime])}")
        why = (NOT_INT8 if preferred == "int8" else
               f"calibration with {runtime} does not measure {preferred}")
        return measurable[0], (f"the profile prefers {preferred}; {why}; measured "
                               f"{measurable[0]}",)
    if precision == "int8":
        raise UsageError(f"--precision int8: {NOT_INT8}; calibrate "
                         f"{' or '.join(measurable) or 'fp32'}")
    if precision not in profile.precisions:
        raise UsageError(f"device '{profile.id}' does not run {precision} (its precisions: "
                         f"{', '.join(profile.precisions)})")
    if precision not in MEASURED[runtime]:
        raise UsageError(f"calibration with {runtime} measures {', '.join(MEASURED[runtime])}, "
                         f"not {precision}")
    return precision, ()


def _checked(runner: CalibrationRunner, profile) -> CalibrationRunner:
    """``runner`` if its runtime (and provider) runs here; else MissingDependencyError, one
    line saying what to install, or which override measures instead."""
    rt, runtime = profile.runtime, runtime_for(runner.runtime)
    if runner.runtime == "tensorrt":
        missing = [m for m in runtime.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(
                f"device '{profile.id}' runs TensorRT {rt.version}, but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed here; install "
                f"{'it' if len(missing) == 1 else 'them'} with: {_TRT_INSTALL}; {_OR_OVERRIDE}")
        return _trt_version_checked(runner, rt.version)
    if any(importlib.util.find_spec(m) is None for m in runtime.modules):
        own = runner.deviation is None and runner.runtime != "onnxruntime"
        raise MissingDependencyError(
            (f"device '{profile.id}' runs {runtime.label}, which" if own
             else f"{runtime.label}") + f" is not installed here; install it with: "
            f"{runtime.install}" + (f"; {_OR_OVERRIDE}" if own else ""))
    problem = runtime.provider_problem(runner.provider)
    if problem:
        how = _PROVIDER_INSTALL.get(runner.provider or "", f"a build of {runtime.label} with it")
        raise MissingDependencyError(
            f"device '{profile.id}' runs {runtime.name} with {runner.provider}, but {problem}; "
            f"install it with: {how}; {_OR_OVERRIDE}")
    return runner


def _trt_version_checked(runner: CalibrationRunner, wanted: str) -> CalibrationRunner:
    """TensorRT 11 has no fp16 builder flag (fp16 comes from a ModelOpt AutoCast copy, which
    calibration does not make): refuse rather than time an fp32 engine as fp16. A version
    other than the profile's is measured, and noted."""
    have = tensorrt_version() or "?"
    if generation(have) == 11 and runner.precision == "fp16":
        raise UsageError(f"TensorRT {have} builds fp16 only from a ModelOpt AutoCast copy of "
                         f"the model, which calibration does not make; pass --precision fp32")
    if parse_version(have) != parse_version(wanted):
        note = f"the profile names TensorRT {wanted}; measured with TensorRT {have}"
        return CalibrationRunner(runner.runtime, runner.provider, runner.precision,
                                 runner.deviation, (*runner.notes, note))
    return runner
