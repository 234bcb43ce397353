"""Runtimes: one interface (``base.Runtime``) for the whole life of a runtime on a device
(is it here, its version, a session on an ONNX model, an engine build, what calibration can
measure with it) and one place that picks the runtime from a profile: ``runtime_for``.

Below ``bench`` and ``export`` in the layering (they both use it); imports only ``errors``,
``machine`` and ``io_utils`` of gtn_deploy, and no runtime library at module level.
Adding a runtime: one module with a ``Runtime`` subclass, one line in ``RUNTIMES``.
"""

from __future__ import annotations

from gtn_deploy.errors import UsageError
from gtn_deploy.runtimes.base import Runner, Runtime, model_file
from gtn_deploy.runtimes.onnxruntime import OnnxRuntime
from gtn_deploy.runtimes.openvino import OpenVINO
from gtn_deploy.runtimes.tensorrt import TensorRT

# The order is the order help and errors list them in (profile_schema.Runtime.name holds
# the same names; a test keeps them equal).
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (OnnxRuntime(), TensorRT(), OpenVINO())}

__all__ = ["RUNTIMES", "Runner", "Runtime", "model_file", "runtime_for"]


def runtime_for(ref) -> Runtime:
    """The runtime named by ``ref``: a name, a profile (its ``runtime.name``) or a profile's
    ``runtime`` entry. An unknown name is a one-line UsageError listing the known ones."""
    name = getattr(getattr(ref, "runtime", ref), "name", ref)
    runtime = RUNTIMES.get(str(name).lower()) if isinstance(name, str) else None
    if runtime is None:
        raise UsageError(f"unknown runtime '{name}'; valid: {', '.join(RUNTIMES)}")
    return runtime
