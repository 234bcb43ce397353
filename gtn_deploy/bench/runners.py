"""Runtime backends for a bundle: onnxruntime (default), TensorRT and torch (both lazy).

Each runner builds its session or engine once (timed) and exposes ``run(x)``. Nothing here
imports torch or tensorrt at module level: the bundle path must work with onnxruntime alone.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gtn_deploy.errors import BenchError, MissingDependencyError, UsageError

BACKENDS = ("onnxruntime", "tensorrt", "torch")
BACKEND_PRECISIONS = {"onnxruntime": ("fp32", "int8"), "tensorrt": ("fp32", "fp16", "int8"),
                      "torch": ("fp32",)}
_INSTALL = {"onnxruntime": "pip install onnxruntime",
            "tensorrt": "JetPack on a Jetson, or pip install tensorrt polygraphy on x86",
            "torch": "pip install 'gtn-deploy[train]'"}


@dataclass
class Runner:
    """A built model: ``run(x)`` does one inference; ``build_s`` is session/engine build time."""

    backend: str
    precision: str
    build_s: float
    run: Callable[[np.ndarray], Any]
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def check_backend(backend: str, precision: str) -> None:
    """Valid names, an installed module: else one line saying what to do."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if precision not in BACKEND_PRECISIONS[backend]:
        raise UsageError(f"backend {backend} runs {', '.join(BACKEND_PRECISIONS[backend])}, "
                         f"not '{precision}'")
    if importlib.util.find_spec(backend) is None:
        raise MissingDependencyError(f"backend '{backend}' is not installed on this machine; "
                                     f"install it with: {_INSTALL[backend]}")


def model_file(bundle_dir: Path, manifest: dict, precision: str) -> Path:
    """The ONNX file of ``precision`` named by the manifest (int8: the Q/DQ model)."""
    key = "int8" if precision == "int8" else "fp32"
    name = (manifest.get("models") or {}).get(key)
    if not name:
        raise BenchError(f"bundle {bundle_dir} has no {key} model (manifest models.{key} is "
                         f"null); valid here: fp32" + (", fp16" if precision == "fp16" else ""))
    return bundle_dir / name


def ort_runner(path: Path | bytes, threads: int | None, precision: str,
               provider: str = "CPUExecutionProvider", profile_prefix: str | None = None) -> Runner:
    """An onnxruntime session with full graph optimisation and pinned thread counts, from an
    ONNX file or the model's bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if provider not in ort.get_available_providers():
        raise BenchError(f"onnxruntime provider {provider} is not available here; "
                         f"available: {', '.join(ort.get_available_providers())}")
    t0 = time.perf_counter()
    model = path if isinstance(path, bytes) else str(path)
    session = ort.InferenceSession(model, opts, providers=[provider])
    build_s = time.perf_counter() - t0
    name = session.get_inputs()[0].name
    return Runner("onnxruntime", precision, build_s, lambda x: session.run(None, {name: x}),
                  {"provider": provider, "graph_optimization": "all", "session": session,
                   "input_shape": list(session.get_inputs()[0].shape)})


def _polygraphy():
    """Polygraphy's engine loader and runner (checked before any engine is built)."""
    try:
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        raise MissingDependencyError("the tensorrt backend needs polygraphy: "
                                     "pip install polygraphy") from None
    return BytesFromPath, EngineFromBytes, TrtRunner


def engine_runner(engine: Path, precision: str, t0: float, info: dict[str, Any]) -> Runner:
    """Run a serialized engine through Polygraphy's TrtRunner; ``build_s`` counts from ``t0``."""
    import tensorrt

    bytes_from_path, engine_from_bytes, trt_runner_cls = _polygraphy()
    runner = trt_runner_cls(engine_from_bytes(bytes_from_path(str(engine))))
    runner.activate()
    build_s = time.perf_counter() - t0
    name = next(iter(runner.get_input_metadata().keys()))
    return Runner("tensorrt", precision, build_s, lambda x: runner.infer({name: x}),
                  {**info, "tensorrt": tensorrt.__version__}, runner.deactivate)


def trt_runner(bundle_dir: Path, manifest: dict, precision: str, batch_size: int) -> Runner:
    """Deserialise ``model.<precision>.engine`` built on this device, or build it now."""
    from gtn_deploy.export import tensorrt as trt_export

    _polygraphy()
    import tensorrt

    from gtn_deploy.manifest import BUILD_DIR

    engine = bundle_dir / BUILD_DIR / f"model.{precision}.engine"  # where build_engine.sh puts it
    t0 = time.perf_counter()
    built = not engine.is_file()
    if built:
        inp = manifest["input"]
        plan = trt_export.plan_engine(
            tensorrt.__version__, precision, inp["name"], [batch_size, *inp["shape"][1:]],
            dynamic_batch=bool(inp.get("dynamic_batch")), max_batch=max(8, batch_size),
            int8_file=(manifest.get("models") or {}).get("int8"))
        trt_export.build_engine(bundle_dir / plan.onnx_file, plan, engine,
                                bundle_dir / BUILD_DIR / "timing.cache")
    return engine_runner(engine, precision, t0, {"engine": engine.name,
                                                 "engine_built_here": built})


def subnet_engine_runner(onnx_path: Path, input_shape: tuple[int, ...],
                         precision: str) -> Runner:
    """A static-shape engine of one calibration subnet, built by the export path's builder
    (``export.tensorrt.build_engine``) with a timing cache shared by the folder's subnets."""
    from gtn_deploy.export import tensorrt as trt_export

    _polygraphy()
    import tensorrt

    t0 = time.perf_counter()
    # "input": the name export.onnx gives every exported model's input (static here, so the
    # name only matters to dynamic-shape profiles)
    plan = trt_export.plan_engine(tensorrt.__version__, precision, "input", tuple(input_shape),
                                  dynamic_batch=False, max_batch=int(input_shape[0]))
    engine = trt_export.build_engine(onnx_path, plan, onnx_path.with_suffix(f".{precision}.engine"),
                                     onnx_path.parent / "timing.cache")
    return engine_runner(engine, precision, t0, {"engine": engine.name,
                                                 "engine_built_here": True})


def torch_runner(bundle_dir: Path, threads: int | None) -> Runner:
    """The eager student from ``weights.safetensors`` + ``student.json`` (reference speed)."""
    import torch

    from gtn_deploy.supernet.checkpoint import load_student

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, _ = load_student(bundle_dir)
    build_s = time.perf_counter() - t0

    def run(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return Runner("torch", "fp32", build_s, run, {"torch": torch.__version__})


def make_runner(backend: str, bundle_dir: Path, manifest: dict, precision: str,
                batch_size: int, threads: int | None) -> Runner:
    check_backend(backend, precision)
    if backend == "onnxruntime":
        return ort_runner(model_file(bundle_dir, manifest, precision), threads, precision)
    if backend == "tensorrt":
        return trt_runner(bundle_dir, manifest, precision, batch_size)
    return torch_runner(bundle_dir, threads)
