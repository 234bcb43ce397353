#!/usr/bin/env python3
"""Run this bundle's ONNX model with onnxruntime and numpy only; print top-5 and latency.

    python3 run_onnx.py                          # random input, the recommended model
    python3 run_onnx.py --input a.npy b.png      # uint8 pixels / float32 normalised / images
    python3 run_onnx.py --model model.int8.onnx --runs 200
    python3 run_onnx.py --runs 500 --json        # one JSON line: timing and this machine

Every image given is classified (a fixed-batch model runs them in padded chunks) and named
from labels.txt; pixels are pre-processed as manifest.json's "preprocessing" says (shared with
run_trt.py through bundle_io.py). The best execution provider available is used (TensorRT,
CUDA, then CPU) and named in the output. Copied verbatim into every bundle by gtn_deploy; it
must not import gtn_deploy or torch, and it runs on Python 3.8 (JetPack 5) with numpy and
onnxruntime alone.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# bundle_io.py sits beside this script; `python -I` / `-P` leave this folder off sys.path.
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # a __pycache__/ in the bundle would fail `gtnd bundle verify`

try:
    import bundle_io  # noqa: E402
except ImportError as exc:  # numpy missing: one line, as for a missing runtime
    raise SystemExit("error: %s; pip install numpy" % str(exc).splitlines()[0])

# Best first: an execution provider is used when this onnxruntime build offers it.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                       "CPUExecutionProvider")


def pick_providers(available, requested=None):
    if requested:
        if requested not in available:
            bundle_io.fail("provider %s is not in this onnxruntime build (available: %s)"
                           % (requested, ", ".join(available)))
        return [requested]
    return [p for p in PREFERRED_PROVIDERS if p in available] or list(available)


def main(argv=None):
    ap = bundle_io.parser(__doc__)
    ap.add_argument("--model", help="ONNX file in this bundle (default: the recommended one)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--provider", help="execution provider (default: the best available of "
                    + ", ".join(PREFERRED_PROVIDERS) + ")")
    args = ap.parse_args(argv)
    manifest, prep, labels = bundle_io.read_bundle(HERE)
    ort = bundle_io.require("onnxruntime", "pip install onnxruntime (or onnxruntime-gpu)")
    model = args.model or manifest["recommended_model"]
    if not model.endswith(".onnx"):
        model = manifest["models"]["fp32"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(HERE, model), opts,
                                providers=pick_providers(ort.get_available_providers(),
                                                         args.provider))
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def run(batch):
        return sess.run(None, {inp.name: batch})[0]

    x = bundle_io.load_inputs(args.input, prep, fixed or 1)
    one = bundle_io.timing_batch(x, fixed or 1)
    if args.json:
        timing = bundle_io.time_ms(run, one, args.runs, args.warmup)
        bundle_io.print_json(model, timing, "onnxruntime", ort.__version__, {
            "provider": sess.get_providers()[0], "threads": args.threads})
        return 0
    # A dynamic batch takes every image in one run; a fixed one in padded chunks.
    bundle_io.print_predictions(bundle_io.run_batches(run, x, fixed, pad=True), labels,
                                args.top)
    t = bundle_io.time_ms(run, one, args.runs, args.warmup)
    print("%s: %d image(s) classified; timing batch %d, p50 %.3f ms, p90 %.3f ms over %d runs "
          "(onnxruntime %s, %s, %d thread(s))"
          % (model, len(x), len(one), t["p50_ms"], t["p90_ms"], t["runs"], ort.__version__,
             sess.get_providers()[0], args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
