"""What ``gtnd bench --backend`` can time a bundle with: every runtime of
``gtn_deploy.runtimes`` (onnxruntime, the default; TensorRT; OpenVINO), and torch.

Each runner builds its session or engine once (timed) and exposes ``run(x)``. Nothing here
imports a runtime, torch or tensorrt at module level: the bundle path must work with
onnxruntime alone. torch is the reference speed of the eager student, not a runtime a
device deploys with, so it lives here and not in ``runtimes``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from gtn_deploy.errors import MissingDependencyError, UsageError
from gtn_deploy.manifest import BUILD_DIR, BundleManifest
from gtn_deploy.runtimes import RUNTIMES, runtime_for
from gtn_deploy.runtimes.base import Runner, model_file

__all__ = ["BACKENDS", "BACKEND_PRECISIONS", "Runner", "check_backend", "default_precision",
           "make_runner", "model_file", "torch_runner"]

BACKENDS = (*RUNTIMES, "torch")
BACKEND_PRECISIONS = {**{name: rt.precisions for name, rt in RUNTIMES.items()},
                      "torch": ("fp32",)}
_TORCH_INSTALL = "pip install 'gtn-deploy[train]'"


def check_backend(backend: str, precision: str) -> None:
    """Valid names, an installed module: else one line saying what to do."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if precision not in BACKEND_PRECISIONS[backend]:
        raise UsageError(f"backend {backend} runs {', '.join(BACKEND_PRECISIONS[backend])}, "
                         f"not '{precision}'")
    if backend in RUNTIMES:
        RUNTIMES[backend].require()
    elif importlib.util.find_spec(backend) is None:
        raise MissingDependencyError(f"backend '{backend}' is not installed on this machine; "
                                     f"install it with: {_TORCH_INSTALL}")


def default_precision(backend: str, recommended: str) -> str:
    """The bundle's recommended precision where ``backend`` runs it, else fp32 (fp16 is a
    TensorRT precision: the CPU runtimes run the fp32 model then)."""
    return recommended if recommended in BACKEND_PRECISIONS.get(backend, ()) else "fp32"


def torch_runner(bundle_dir: Path, threads: int | None) -> Runner:
    """The eager student from ``weights.safetensors`` + ``student.json`` (reference speed)."""
    import torch

    # lazy: keeps torch out of a light module
    from gtn_deploy.supernet.checkpoint import load_student

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, _ = load_student(bundle_dir)
    build_s = time.perf_counter() - t0

    def run(x: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(x))

    return Runner("torch", "fp32", build_s, run,
                  {"runtime": "torch", "runtime_version": torch.__version__,
                   "torch": torch.__version__})


def make_runner(backend: str, bundle_dir: Path, manifest: BundleManifest, precision: str,
                batch_size: int, threads: int | None) -> Runner:
    """The bundle's model at ``precision``, built by ``backend`` (checked first)."""
    check_backend(backend, precision)
    if backend == "torch":
        return torch_runner(bundle_dir, threads)
    return runtime_for(backend).bundle_session(bundle_dir, manifest, precision, batch_size,
                                               threads, bundle_dir / BUILD_DIR)
