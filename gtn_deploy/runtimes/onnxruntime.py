"""onnxruntime: the default runtime, and the only one with a per-node profiler (tier 2).

Every session gtn_deploy makes is set up here (bench, calibration, the local probe, the
export's parity and accuracy gates): full graph optimisation, sequential execution, one
inter-op thread and a pinned intra-op count, so that every figure means the same thing.
The bundle's standalone scripts (``run_onnx.py``, ``time_subnets.py``) repeat these settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from gtn_deploy.errors import BenchError
from gtn_deploy.machine import onnxruntime_info
from gtn_deploy.runtimes.base import Model, Runner, Runtime

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def inference_session(model: Model, threads: int | None = 1, provider: str = CPU,
                      profile_prefix: str | None = None):
    """An ``onnxruntime.InferenceSession`` of an ONNX file or its bytes, set up as above;
    ``profile_prefix``: run the node profiler, writing its JSON there."""
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
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=[provider])


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    label = "onnxruntime"
    modules = ("onnxruntime",)
    install = "pip install onnxruntime (or onnxruntime-gpu for CUDA)"
    precisions = ("fp32", "int8")
    calibration_precisions = ("fp32",)

    def version(self) -> str | None:
        return (onnxruntime_info() or {}).get("version")

    def default_provider(self, profile) -> str:
        """The profile's provider; else CUDA for a GPU profile, the CPU provider otherwise."""
        return profile.runtime.provider or (CUDA if profile.kind == "gpu" else CPU)

    def provider_problem(self, provider: str | None) -> str | None:
        import onnxruntime as ort

        have = ort.get_available_providers()
        if (provider or CPU) in have:
            return None
        return f"this onnxruntime lacks {provider} (it has {', '.join(have)})"

    def session(self, model: Model, threads: int | None, precision: str, *,
                provider: str | None = None, input_shape: Sequence[int] | None = None,
                profile_prefix: str | None = None, **options: Any) -> Runner:
        """``info["session"]`` is the InferenceSession (the node profiler ends through it)."""
        provider = provider or CPU
        t0 = time.perf_counter()
        session = inference_session(model, threads, provider, profile_prefix)
        build_s = time.perf_counter() - t0
        name = session.get_inputs()[0].name
        return Runner(self.name, precision, build_s, lambda x: session.run(None, {name: x})[0],
                      {"runtime": self.name, "runtime_version": self.version(),
                       "provider": provider, "graph_optimization": "all", "session": session,
                       "input_shape": list(session.get_inputs()[0].shape)})

    def tier2_unavailable(self, provider: str | None) -> str | None:
        if (provider or CPU) == CPU:
            return None
        return (f"onnxruntime's node profiler times kernel launches, not GPU time, under "
                f"{provider}: tier 1 only")


def node_events(runner: Runner) -> list[dict]:
    """The node profiler's events of a session made with ``profile_prefix`` (ends it)."""
    import json

    return json.loads(Path(runner.info["session"].end_profiling()).read_text())
