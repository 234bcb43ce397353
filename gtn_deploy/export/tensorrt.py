"""TensorRT: a ``trtexec`` build script per TensorRT generation, and a Python build path.

Engines and timing caches are tied to the GPU, TensorRT and CUDA versions, so a bundle never
ships one: it ships ``build_engine.sh`` for the device's TensorRT, and ``gtnd export
--build-engine`` builds on the device with the Python API. Flags by generation (from NVIDIA's
trtexec help and the 8.x->10.x and 10.x->11.x migration guides):

- 8.x: ``--workspace=N`` (MiB), weak typing with ``--fp16`` / ``--int8``.
- 10.x: ``--workspace`` removed for ``--memPoolSize=workspace:NM``; ``--fp16`` / ``--int8``.
- 11.x: every network is strongly typed (``--stronglyTyped`` is a harmless no-op kept for
  clarity); precision flags and calibrators are gone: FP16 comes from a ModelOpt AutoCast
  copy of the model, INT8 only from the explicit Q/DQ model.

INT8 always uses the NNCF Q/DQ model (explicit quantisation): ``--int8`` on the fp32 model
without a calibration cache would build with made-up scales.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gtn_deploy.errors import ExportError, UsageError, require

DEFAULT_WORKSPACE_MB = 256  # these students need a few MiB; a Nano has 4 GB shared
# Engine vs onnxruntime logits: TensorRT 8.x/10.x enable TF32 by default on Ampere and later,
# so even an "fp32" engine differs by ~1e-3; fp16 keeps ~3 significant digits.
ENGINE_LOGIT_ATOL = {"fp32": 1e-2, "fp16": 1e-1, "int8": None}


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


def _dims(shape) -> str:
    return "x".join(str(int(d)) for d in shape)


def trtexec_args(plan: EnginePlan, onnx_var: str = '"$ONNX"') -> list[str]:
    """The trtexec flags for this TensorRT generation (``$ONNX`` etc. expand in the script)."""
    gen = generation(plan.trt_version)
    args = [f"--onnx={onnx_var}", '--saveEngine="$ENGINE"', '--timingCacheFile="$TIMING_CACHE"']
    if plan.dynamic_batch:
        lo, opt, hi = plan.shapes()
        args += [f"--minShapes={plan.input_name}:{_dims(lo)}",
                 f"--optShapes={plan.input_name}:{_dims(opt)}",
                 f"--maxShapes={plan.input_name}:{_dims(hi)}"]
    if gen == 8:
        args.append(f"--workspace={plan.workspace_mb}")
    else:
        args.append(f"--memPoolSize=workspace:{plan.workspace_mb}M")
    if gen == 11:
        args.append("--stronglyTyped")
    elif plan.precision == "fp16":
        args.append("--fp16")
    elif plan.precision == "int8":  # Q/DQ model; fp16 lets the unquantised layers drop too
        args += ["--int8", "--fp16"]
    return args


_VERSION_CHECK = r'''
# The installed TensorRT must match the one this script was written for: flags differ
# between 8.x, 10.x and 11.x, and engines only run on the TensorRT that built them.
installed=""
if banner=$("$TRTEXEC" --help 2>&1 | grep -o 'TensorRT v[0-9]*' | head -n1); [ -n "$banner" ]; then
  n=${banner#TensorRT v}
  if [ "$n" -ge 100000 ]; then installed="$((n / 10000)).$(((n / 100) % 100))"
  else installed="$((n / 1000)).$(((n / 100) % 10))"; fi
elif command -v python3 >/dev/null 2>&1; then
  installed=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)
fi
want_mm=$(echo "$EXPECTED_TRT" | cut -d. -f1-2)
have_mm=$(echo "$installed" | cut -d. -f1-2)
if [ -z "$installed" ]; then
  echo "warning: cannot tell the installed TensorRT version; this script targets TensorRT $EXPECTED_TRT" >&2
elif [ "$have_mm" != "$want_mm" ]; then
  echo "warning: installed TensorRT $installed differs from the profile's TensorRT $EXPECTED_TRT;" \
       "flags or parity may differ (re-export with a matching device profile)" >&2
fi
'''


def _fp16_autocast_block() -> str:
    return r'''
# TensorRT 11 has no --fp16: FP16 comes from a mixed-precision copy made by ModelOpt AutoCast.
if python3 -c 'import modelopt.onnx.autocast' >/dev/null 2>&1; then
  python3 -m modelopt.onnx.autocast --onnx_path "$ONNX" --output_path "$BUILD_DIR/model.fp16.onnx" \
    --low_precision_type fp16 --keep_io_types
  ONNX="$BUILD_DIR/model.fp16.onnx"
else
  echo "warning: nvidia-modelopt is not installed; building an FP32 engine" \
       "(pip install nvidia-modelopt[onnx] for FP16 on TensorRT 11)" >&2
fi
'''


def build_script(plan: EnginePlan, device_id: str) -> str:
    """The text of ``build_engine.sh`` for ``plan`` (bash, ``set -euo pipefail``)."""
    gen = generation(plan.trt_version)
    lines = [
        "#!/usr/bin/env bash",
        f"# Build a TensorRT engine for '{device_id}' on the device itself (TensorRT "
        f"{plan.trt_version}, {plan.precision}).",
        "# Engines and timing caches are tied to GPU, TensorRT and CUDA: never copy one across.",
        "# Usage: ./build_engine.sh [ENGINE_PATH]   (env: TRTEXEC, BUILD_DIR, TIMING_CACHE)",
        "set -euo pipefail",
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        f"EXPECTED_TRT={shlex.quote(plan.trt_version)}",
        'BUILD_DIR="${BUILD_DIR:-$HERE/build}"',
        'mkdir -p "$BUILD_DIR"',
        f'ONNX="$HERE/{plan.onnx_file}"',
        f'ENGINE="${{1:-$BUILD_DIR/model.{plan.precision}.engine}}"',
        'TIMING_CACHE="${TIMING_CACHE:-$BUILD_DIR/timing.cache}"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        'if [ ! -x "$TRTEXEC" ]; then echo "error: trtexec not found (set TRTEXEC=...)" >&2; exit 2; fi',
    ]
    text = "\n".join(lines) + "\n" + _VERSION_CHECK
    if gen == 8 and parse_version(plan.trt_version) < (8, 6) and plan.opset > 13:
        text += (f'echo "warning: TensorRT {plan.trt_version} parses ONNX opsets up to 13; this '
                 f'model is opset {plan.opset} (re-export with: gtnd export --opset 13)" >&2\n')
    if gen == 11 and plan.precision == "fp16":
        text += _fp16_autocast_block()
    args = trtexec_args(plan)
    text += '\nset -x\n"$TRTEXEC" \\\n' + " \\\n".join(f"  {a}" for a in args) + "\n"
    text += '{ set +x; } 2>/dev/null\necho "engine: $ENGINE"\n'
    return text


# -- the Python build path (runs on the device; tensorrt imported lazily) -------------------

def build_engine(onnx_path: str | Path, plan: EnginePlan, out: str | Path,
                 timing_cache: str | Path | None = None) -> Path:
    """Build and write a serialized engine with the TensorRT API; load/save the timing cache."""
    from gtn_deploy.io_utils import atomic_write_bytes

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


def engine_logits(engine_path: str | Path, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Run a serialized engine on ``images`` through Polygraphy's TrtRunner."""
    try:
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    except ImportError:
        raise ExportError("engine parity needs polygraphy: pip install polygraphy") from None
    outs = []
    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path)))) as runner:
        name = next(iter(runner.get_input_metadata().keys()))
        for i in range(0, len(images), batch_size):
            chunk = np.ascontiguousarray(images[i:i + batch_size], np.float32)
            n = len(chunk)
            if n < batch_size:
                chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
            result = runner.infer({name: chunk})
            outs.append(np.asarray(next(iter(result.values())))[:n])
    return np.concatenate(outs)
