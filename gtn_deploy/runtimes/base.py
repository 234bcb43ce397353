"""What every runtime provides: its name and precisions, whether it is installed (and how to
get it), its version, a session on an ONNX model (a ``Runner``), an engine build where the
runtime has one, and what calibration can measure with it.

No runtime library is imported at module level: ``gtnd bench`` on a device needs the bundle,
numpy and the one runtime it times.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from gtn_deploy.errors import BenchError, MissingDependencyError
from gtn_deploy.manifest import BundleManifest

Model = Path | str | bytes  # an ONNX file, or its bytes


@dataclass
class Runner:
    """A built model: ``run(x)`` does one inference on a numpy batch and returns the first
    output (the logits); ``build_s`` is the session or engine build time; ``info`` says how it
    was built (``runtime``, ``runtime_version`` and the runtime's own settings)."""

    backend: str
    precision: str
    build_s: float
    run: Callable[[np.ndarray], Any]
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def model_file(bundle_dir: Path, manifest: BundleManifest, precision: str) -> Path:
    """The ONNX file of ``precision`` named by the manifest (int8: the Q/DQ model)."""
    key = "int8" if precision == "int8" else "fp32"
    name = manifest.models.get(key)
    if not name:
        have = [k for k in ("fp32", "int8") if manifest.models.get(k)]
        raise BenchError(f"bundle {bundle_dir} has no {key} model (manifest models.{key} is "
                         f"null); valid here: {', '.join(have) or 'none'}")
    return bundle_dir / name


class Runtime(ABC):
    """One runtime behind ``gtnd bench``, ``gtnd calibrate`` and the cost model's fingerprint.

    A new runtime is one module with a subclass and one line in ``runtimes.RUNTIMES``."""

    name: ClassVar[str]
    label: ClassVar[str]  # how a sentence names it: "onnxruntime", "TensorRT", "OpenVINO"
    modules: ClassVar[tuple[str, ...]]  # what must import for it to run here
    install: ClassVar[str]  # how to get it, one line
    precisions: ClassVar[tuple[str, ...]]  # what it runs from a bundle
    calibration_precisions: ClassVar[tuple[str, ...]]  # what calibration times, in order of choice
    threaded: ClassVar[bool] = True  # takes an intra-op thread count (then in the fingerprint)

    def missing(self) -> list[str]:
        """The modules this runtime needs that are not installed here."""
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def require(self) -> None:
        """Nothing, or MissingDependencyError: one line saying what to install."""
        missing = self.missing()
        if missing:
            raise MissingDependencyError(
                f"runtime '{self.name}' is not installed on this machine ({' and '.join(missing)} "
                f"{'does' if len(missing) == 1 else 'do'} not import); install it with: "
                f"{self.install}")

    @abstractmethod
    def version(self) -> str | None:
        """The installed version (None where it is not installed)."""

    def default_provider(self, profile) -> str | None:
        """The execution provider or device ``profile`` runs this runtime on (None: none)."""
        return profile.runtime.provider

    def provider_problem(self, provider: str | None) -> str | None:
        """Why ``provider`` cannot run here (the runtime installed), or None."""
        return None

    @abstractmethod
    def session(self, model: Model, threads: int | None, precision: str, *,
                provider: str | None = None, input_shape: Sequence[int] | None = None,
                **options: Any) -> Runner:
        """A built model of ``model`` (an ONNX file or its bytes) at ``precision`` on
        ``threads`` intra-op threads (None: the runtime's default)."""

    def bundle_session(self, bundle_dir: Path, manifest: BundleManifest, precision: str,
                       batch_size: int,
                       threads: int | None, build_dir: Path) -> Runner:
        """A bundle's model at ``precision`` (what ``gtnd bench`` times). ``build_dir``:
        where engine runtimes keep what they build on the device."""
        return self.session(model_file(bundle_dir, manifest, precision), threads, precision)

    def tier2_unavailable(self, provider: str | None) -> str | None:
        """Why calibration cannot fit tier 2 (per-block times) with this runtime, or None."""
        return (f"tier 2 needs onnxruntime's per-node profiler: with {self.label}, calibration "
                f"fits tier 1 only")

    def label_with(self, version: str | None, provider: str | None) -> str:
        """``onnxruntime 1.17 (CPUExecutionProvider)``, ``tensorrt 10.3``."""
        return f"{self.name} {version or '?'}" + (f" ({provider})" if provider else "")
