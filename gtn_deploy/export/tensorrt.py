"""TensorRT at export: a ``trtexec`` build script per TensorRT generation.

Engines and timing caches are tied to the GPU, TensorRT and CUDA versions, so a bundle never
ships one: it ships ``build_engine.sh`` for the device's TensorRT, and ``gtnd export
--build-engine`` builds on the device with the Python API (``runtimes.tensorrt``, where the
engine plan, the build and the runner live). Flags by
generation (from NVIDIA's trtexec help and the 8.x->10.x and 10.x->11.x migration guides):

- 8.x: ``--workspace=N`` (MiB), weak typing with ``--fp16`` / ``--int8``.
- 10.x: ``--workspace`` removed for ``--memPoolSize=workspace:NM``; ``--fp16`` / ``--int8``.
- 11.x: every network is strongly typed (``--stronglyTyped`` is a harmless no-op kept for
  clarity); precision flags and calibrators are gone: FP16 comes from a ModelOpt AutoCast
  copy of the model, INT8 only from the explicit Q/DQ model.

INT8 always uses the NNCF Q/DQ model (explicit quantisation): ``--int8`` on the fp32 model
without a calibration cache would build with made-up scales.
"""

from __future__ import annotations

import shlex

from gtn_deploy.runtimes.tensorrt import EnginePlan, generation, parse_version

# Engine vs onnxruntime logits: TensorRT 8.x/10.x enable TF32 by default on Ampere and later,
# so even an "fp32" engine differs by ~1e-3; fp16 keeps ~3 significant digits.
ENGINE_LOGIT_ATOL = {"fp32": 1e-2, "fp16": 1e-1, "int8": None}


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
