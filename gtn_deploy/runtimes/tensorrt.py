"""TensorRT: versions and generations, the engine plan, the Python engine build and a runner.

Engines and timing caches are tied to the GPU, TensorRT and CUDA versions, so they are built
on the device: by ``build_engine.sh`` (``export.tensorrt`` writes it from the same
``EnginePlan``), by ``gtnd export --build-engine``, or here when ``gtnd bench`` or
``gtnd calibrate`` needs one. tensorrt and polygraphy are imported inside the functions.

INT8 always uses the NNCF Q/DQ model (explicit quantisation): ``--int8`` on the fp32 model
without a calibration cache would build with made-up scales. TensorRT 11 networks are
strongly typed: no precision flags; fp16 comes from a ModelOpt AutoCast copy of the model.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gtn_deploy.errors import ExportError, MissingDependencyError, UsageError, require
from gtn_deploy.io_utils import atomic_write_bytes
from gtn_deploy.machine import tensorrt_version
from gtn_deploy.manifest import BundleManifest
from gtn_deploy.runtimes.base import Model, Runner, Runtime

DEFAULT_WORKSPACE_MB = 256  # these students need a few MiB; a Nano has 4 GB shared
INSTALL = "JetPack on a Jetson, or pip install tensorrt polygraphy on x86"


def parse_version(version: str) -> tuple[int, int]:
    """``"10.3"`` / ``"8.2.1"`` -> (major, minor)."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?", str(version))
    if not m:
        raise UsageError(f"cannot read TensorRT version '{version}'; expected e.g. 8.2.1 or 10.3")
    return int(m.group(1)), int(m.group(2) or 0)


def generation(version: str) -> int:
    major, _ = parse_version(version)
    if major < 8:
        raise UsageError(f"TensorRT {version} is not supported; valid: 8.x, 10.x, 11.x")
    return 8 if major == 8 else (10 if major in (9, 10) else 11)


@dataclass(frozen=True)
class EnginePlan:
    """Everything a build needs, decided once for the script and the Python path alike."""

    trt_version: str
    precision: str  # fp32 | fp16 | int8
    onnx_file: str  # relative to the bundle: model.onnx, or model.int8.onnx for int8
    input_name: str
    input_shape: tuple[int, ...]  # (batch, C, H, W) with the opt batch
    dynamic_batch: bool
    max_batch: int
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    opset: int = 17

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        rest = self.input_shape[1:]
        opt = self.input_shape[0]
        return (1, *rest), (opt, *rest), (max(self.max_batch, opt), *rest)


def plan_engine(trt_version: str, precision: str, input_name: str, input_shape, *,
                dynamic_batch: bool, max_batch: int = 8, int8_file: str | None = None,
                workspace_mb: int = DEFAULT_WORKSPACE_MB, opset: int = 17) -> EnginePlan:
    """Choose the model file for ``precision``; INT8 needs the Q/DQ model."""
    generation(trt_version)
    if precision not in ("fp32", "fp16", "int8"):
        raise UsageError(f"unknown precision '{precision}'; valid: fp32, fp16, int8")
    if precision == "int8" and not int8_file:
        raise ExportError("an INT8 TensorRT engine needs the Q/DQ model (model.int8.onnx); "
                          "export with --int8 or choose fp16")
    onnx_file = int8_file if precision == "int8" else "model.onnx"
    return EnginePlan(trt_version, precision, onnx_file, input_name, tuple(input_shape),
                      dynamic_batch, max_batch, workspace_mb, opset)


def build_engine(onnx_path: str | Path, plan: EnginePlan, out: str | Path,
                 timing_cache: str | Path | None = None) -> Path:
    """Build and write a serialized engine with the TensorRT API; load/save the timing cache."""
    trt = require("tensorrt", "tensorrt")
    gen = generation(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, gen))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    _set_workspace(trt, config, plan.workspace_mb << 20)
    if gen < 11 and plan.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if gen < 11 and plan.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
    if plan.dynamic_batch:
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(plan.input_name, *plan.shapes())
        config.add_optimization_profile(opt_profile)
    cache_path = Path(timing_cache) if timing_cache else None
    blob = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} ({plan.precision})")
    if cache_path:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return atomic_write_bytes(out, bytes(serialized))


def _network_flags(trt, gen: int) -> int:
    if gen == 8:  # explicit batch is the default (and the flag deprecated) from 10 on
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if gen == 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _set_workspace(trt, config, size: int) -> None:
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:  # 8.2 (Jetson Nano)
        config.max_workspace_size = size


def polygraphy(error: type[Exception] = MissingDependencyError):
    """Polygraphy's engine loader and runner (checked before any engine is built)."""
    try:
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        raise error("TensorRT engines run through polygraphy: pip install polygraphy") from None
    return BytesFromPath, EngineFromBytes, TrtRunner


def engine_logits(engine_path: str | Path, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a serialized engine on ``images`` through Polygraphy's TrtRunner."""
    bytes_from_path, engine_from_bytes, trt_runner = polygraphy(ExportError)
    outs = []
    with trt_runner(engine_from_bytes(bytes_from_path(str(engine_path)))) as runner:
        name = next(iter(runner.get_input_metadata().keys()))
        for i in range(0, len(images), batch_size):
            chunk = np.ascontiguousarray(images[i:i + batch_size], np.float32)
            n = len(chunk)
            if n < batch_size:
                chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
            result = runner.infer({name: chunk})
            outs.append(np.asarray(next(iter(result.values())))[:n])
    return np.concatenate(outs)


class TensorRT(Runtime):
    name = "tensorrt"
    label = "TensorRT"
    modules = ("tensorrt", "polygraphy")
    install = INSTALL
    precisions = ("fp32", "fp16", "int8")
    calibration_precisions = ("fp16", "fp32")
    threaded = False

    def version(self) -> str | None:
        return tensorrt_version()

    def default_provider(self, profile) -> None:
        return None

    def engine_runner(self, engine: Path, precision: str, t0: float,
                      info: dict[str, Any]) -> Runner:
        """Run a serialized engine through Polygraphy's TrtRunner; ``build_s`` counts from
        ``t0`` (the build, where there was one, included)."""
        bytes_from_path, engine_from_bytes, trt_runner_cls = polygraphy()
        runner = trt_runner_cls(engine_from_bytes(bytes_from_path(str(engine))))
        runner.activate()
        build_s = time.perf_counter() - t0
        name = next(iter(runner.get_input_metadata().keys()))
        version = self.version()
        return Runner(self.name, precision, build_s,
                      lambda x: next(iter(runner.infer({name: x}).values())),
                      {"runtime": self.name, "runtime_version": version, "tensorrt": version,
                       **info}, runner.deactivate)

    def session(self, model: Model, threads: int | None, precision: str, *,
                provider: str | None = None, input_shape: Sequence[int] | None = None,
                **options: Any) -> Runner:
        """A static-shape engine of an ONNX file (a calibration subnet), built next to it
        with a timing cache shared by the folder's models; or a ``.engine`` file, loaded."""
        if isinstance(model, bytes):
            raise UsageError("TensorRT builds engines from ONNX files, not bytes")
        path = Path(model)
        polygraphy()
        t0 = time.perf_counter()
        if path.suffix == ".engine":
            return self.engine_runner(path, precision, t0, {"engine": path.name,
                                                            "engine_built_here": False})
        if input_shape is None:
            raise UsageError("a TensorRT engine of an ONNX file needs its input shape")
        # "input": the name export.onnx gives every exported model's input (static here, so
        # the name only matters to dynamic-shape profiles)
        plan = plan_engine(self.version() or "", precision, "input", tuple(input_shape),
                           dynamic_batch=False, max_batch=int(input_shape[0]))
        engine = build_engine(path, plan, path.with_suffix(f".{precision}.engine"),
                              path.parent / "timing.cache")
        return self.engine_runner(engine, precision, t0, {"engine": engine.name,
                                                          "engine_built_here": True})

    def bundle_session(self, bundle_dir: Path, manifest: BundleManifest, precision: str,
                       batch_size: int,
                       threads: int | None, build_dir: Path) -> Runner:
        """Deserialise ``build_dir/model.<precision>.engine`` built on this device (where
        ``build_engine.sh`` puts it), or build it now."""
        polygraphy()
        engine = build_dir / f"model.{precision}.engine"
        t0 = time.perf_counter()
        built = not engine.is_file()
        if built:
            inp = manifest.input
            plan = plan_engine(
                self.version() or "", precision, inp["name"], [batch_size, *inp["shape"][1:]],
                dynamic_batch=bool(inp.get("dynamic_batch")), max_batch=max(8, batch_size),
                int8_file=manifest.models.get("int8"))
            build_engine(bundle_dir / plan.onnx_file, plan, engine, build_dir / "timing.cache")
        return self.engine_runner(engine, precision, t0, {"engine": engine.name,
                                                          "engine_built_here": built})
