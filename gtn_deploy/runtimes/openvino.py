"""OpenVINO: Intel's runtime, the one Intel-CPU users pick. It reads the bundle's ONNX files
as they are (fp32, and NNCF's Q/DQ int8 model, which its CPU plugin runs as int8 kernels),
so a bundle needs nothing made for it.

Each session reads the model with ``openvino.Core``, compiles it for the device (``CPU``
unless the profile names another: ``runtime.provider``) with the latency hint (one stream),
``INFERENCE_NUM_THREADS`` pinned where a thread count is given, and fp32 inference precision
(on CPUs with bf16 units OpenVINO would otherwise run an fp32 model in bf16). Calibration
fits tier 1 with it; tier 2 stays onnxruntime's (its node profiler names the blocks).
``pip install 'gtn-deploy[openvino]'``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from gtn_deploy.errors import require
from gtn_deploy.runtimes.base import Model, Runner, Runtime

DEVICE = "CPU"


def _openvino():
    """The openvino module, or MissingDependencyError naming the extra (one line)."""
    return require("openvino", "openvino")


class OpenVINO(Runtime):
    name = "openvino"
    label = "OpenVINO"
    modules = ("openvino",)
    install = "pip install 'gtn-deploy[openvino]'"
    precisions = ("fp32", "int8")
    calibration_precisions = ("fp32",)

    def version(self) -> str | None:
        """``2026.4.1`` (the package's version; ``openvino.__version__`` adds the build)."""
        from importlib import metadata

        try:
            return metadata.version("openvino")
        except metadata.PackageNotFoundError:
            return None

    def default_provider(self, profile) -> str:
        return profile.runtime.provider or DEVICE

    def provider_problem(self, provider: str | None) -> str | None:
        have = _openvino().Core().available_devices
        device = provider or DEVICE
        if any(d == device or d.startswith(f"{device}.") for d in have):
            return None
        return f"OpenVINO sees no {device} device here (it has {', '.join(have)})"

    def config(self, threads: int | None) -> dict[str, Any]:
        """The compile properties: latency hint, fp32 inference, threads where given."""
        ov = _openvino()
        import openvino.properties as props
        import openvino.properties.hint as hints

        config: dict[str, Any] = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                                  hints.inference_precision: ov.Type.f32}
        if threads:
            config[props.inference_num_threads] = int(threads)
        return config

    def session(self, model: Model, threads: int | None, precision: str, *,
                provider: str | None = None, input_shape: Sequence[int] | None = None,
                **options: Any) -> Runner:
        ov = _openvino()
        device = provider or DEVICE
        t0 = time.perf_counter()
        core = ov.Core()
        net = core.read_model(model if isinstance(model, bytes) else str(Path(model)))
        compiled = core.compile_model(net, device, self.config(threads))
        request = compiled.create_infer_request()
        build_s = time.perf_counter() - t0

        def run(x):
            return request.infer({0: x}, share_inputs=True)[0]

        return Runner(self.name, precision, build_s, run, {
            "runtime": self.name, "runtime_version": self.version(), "provider": device,
            "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "inference_num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "cpu_pinning": _maybe(compiled, "ENABLE_CPU_PINNING"),
            "input_shape": [int(d) for d in net.inputs[0].get_shape()]
            if net.inputs[0].get_partial_shape().is_static else None})


def _maybe(compiled, key: str) -> Any:
    """A compiled model's property, or None where this device or version has none."""
    try:
        value = compiled.get_property(key)
    except RuntimeError:
        return None
    return value if isinstance(value, (bool, int, float, str)) else str(value)
