"""Which runtime ``gtnd calibrate`` measures with: the one place that reads it off a profile.

A profile names its runtime (``runtime.name``, ``runtime.version``) and, for onnxruntime,
the execution provider (``runtime.provider``; a ``kind: gpu`` profile that names none means
CUDA, a CPU profile the CPU provider). Calibration measures with exactly that, at the
profile's preferred precision where calibration can measure it:

- onnxruntime, any provider the profile names: fp32.
- TensorRT: fp16 (or fp32), one engine per subnet from the export path's builder.
- int8 on either: refused (``NOT_INT8`` says why).

``--runtime onnxruntime-cpu`` measures with onnxruntime's CPU provider instead where the
profile's runtime is missing; the calibration then records the deviation.

On another machine (``gtnd calibrate --host``) calibration measures with onnxruntime only
(the device runs a standalone script with onnxruntime and numpy), and whether the provider is
there is checked there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gtn_deploy.bench.runners import Runner, ort_runner, subnet_engine_runner
from gtn_deploy.constants import PRECISIONS
from gtn_deploy.errors import MissingDependencyError, UsageError

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
OVERRIDES = ("onnxruntime-cpu",)
MEASURED = {"onnxruntime": ("fp32",), "tensorrt": ("fp16", "fp32")}  # in order of choice
NOT_INT8 = ("int8 is not calibrated: an int8 model is quantised on real data (the bundle's "
            "NNCF Q/DQ model), and calibration subnets have random weights and no data, so "
            "its timings would come from a model no bundle ships")
_PROVIDER_INSTALL = {CUDA: "pip install onnxruntime-gpu",
                     "TensorrtExecutionProvider": "pip install onnxruntime-gpu (with TensorRT)",
                     "OpenVINOExecutionProvider": "pip install onnxruntime-openvino"}
_TRT_INSTALL = "JetPack on a Jetson, or pip install tensorrt polygraphy on x86"
_OR_OVERRIDE = ("or pass --runtime onnxruntime-cpu to measure with onnxruntime's CPU provider "
                "instead (recorded in the profile as a deviation)")


@dataclass(frozen=True)
class CalibrationRunner:
    """How each calibration subnet runs: runtime, provider, precision (and any deviation)."""

    runtime: str  # onnxruntime | tensorrt
    provider: str | None  # onnxruntime's execution provider; None for TensorRT
    precision: str
    deviation: str | None = None  # why this is not the profile's own runtime
    notes: tuple[str, ...] = field(default=())

    @property
    def tier2_unavailable(self) -> str | None:
        """Why tier 2 (onnxruntime's node profiler) cannot be fitted here; None if it can."""
        if self.runtime != "onnxruntime":
            return ("tier 2 needs onnxruntime's per-node profiler: with TensorRT, calibration "
                    "fits tier 1 only")
        if self.provider != CPU:
            return (f"onnxruntime's node profiler times kernel launches, not GPU time, under "
                    f"{self.provider}: tier 1 only")
        return None

    def make(self, onnx_path: Path, input_shape: tuple[int, ...], threads: int) -> Runner:
        if self.runtime == "onnxruntime":
            return ort_runner(onnx_path, threads, self.precision, self.provider or CPU)
        return subnet_engine_runner(onnx_path, input_shape, self.precision)

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
    own_provider = rt.provider or (CUDA if profile.kind == "gpu" else CPU)
    deviation = None
    if override is not None:
        if override not in OVERRIDES:
            raise UsageError(f"--runtime {override}: valid: {', '.join(OVERRIDES)}")
        name, provider = "onnxruntime", CPU
        if not (rt.name == "onnxruntime" and own_provider == CPU):
            deviation = (f"measured with onnxruntime's CPU provider (--runtime {override}), not "
                         f"the profile's {_label(rt.name, rt.version, own_provider)}")
    elif rt.name in MEASURED:
        name, provider = rt.name, own_provider if rt.name == "onnxruntime" else None
    else:
        raise UsageError(f"device '{profile.id}' runs {rt.name}; calibration measures with "
                         f"onnxruntime or tensorrt; {_OR_OVERRIDE}")
    if not here and name != "onnxruntime":
        raise UsageError(f"device '{profile.id}' runs {rt.name}; --host measures with "
                         f"onnxruntime on the device (a standalone script, no {rt.name}); "
                         f"{_OR_OVERRIDE}")
    chosen, notes = _precision(profile, name, precision)
    runner = CalibrationRunner(name, provider, chosen, deviation, notes)
    return _checked(runner, profile) if here else runner


def _label(name: str, version: str, provider: str | None) -> str:
    return f"{name} {version}" + (f" ({provider})" if name == "onnxruntime" else "")


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
    """``runner`` if its runtime runs here; else MissingDependencyError, one line."""
    rt = profile.runtime
    if runner.runtime == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependencyError("onnxruntime is not installed: pip install onnxruntime")
        import onnxruntime as ort

        have = ort.get_available_providers()
        if runner.provider not in have:
            how = _PROVIDER_INSTALL.get(runner.provider, "an onnxruntime build with it")
            raise MissingDependencyError(
                f"device '{profile.id}' runs onnxruntime with {runner.provider}, which this "
                f"onnxruntime lacks (it has {', '.join(have)}); install it with: {how}; "
                f"{_OR_OVERRIDE}")
        return runner
    missing = [m for m in ("tensorrt", "polygraphy") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"device '{profile.id}' runs TensorRT {rt.version}, but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed here; install "
            f"{'it' if len(missing) == 1 else 'them'} with: {_TRT_INSTALL}; {_OR_OVERRIDE}")
    return _trt_version_checked(runner, rt.version)


def _trt_version_checked(runner: CalibrationRunner, wanted: str) -> CalibrationRunner:
    """TensorRT 11 has no fp16 builder flag (fp16 comes from a ModelOpt AutoCast copy, which
    calibration does not make): refuse rather than time an fp32 engine as fp16. A version
    other than the profile's is measured, and noted."""
    from gtn_deploy.export.tensorrt import generation, parse_version
    from gtn_deploy.machine import tensorrt_version

    have = tensorrt_version() or "?"
    if generation(have) == 11 and runner.precision == "fp16":
        raise UsageError(f"TensorRT {have} builds fp16 only from a ModelOpt AutoCast copy of "
                         f"the model, which calibration does not make; pass --precision fp32")
    if parse_version(have) != parse_version(wanted):
        note = f"the profile names TensorRT {wanted}; measured with TensorRT {have}"
        return CalibrationRunner(runner.runtime, runner.provider, runner.precision,
                                 runner.deviation, (*runner.notes, note))
    return runner
