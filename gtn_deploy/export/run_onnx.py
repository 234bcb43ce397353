#!/usr/bin/env python3
"""Run this bundle's ONNX model with onnxruntime and numpy only; print top-5 and latency.

    python3 run_onnx.py                      # random input, the recommended model
    python3 run_onnx.py --input images.npy   # uint8 (N,H,W)/(N,C,H,W) pixels or float32 normalised
    python3 run_onnx.py --model model.int8.onnx --runs 200

Copied verbatim into every bundle by gtn_deploy; it must not import gtn_deploy or torch.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))


def load_input(path, spec, batch):
    """A float32 NCHW batch: .npy pixels are normalised with the manifest's mean/std/scale."""
    shape = list(spec["shape"])
    if path is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal([batch] + shape[1:]).astype(np.float32)
    x = np.load(path, allow_pickle=False)  # never unpickle
    if x.ndim == len(shape) - 1:
        x = x[:, None] if shape[1] == 1 else x[None]
    if x.dtype == np.uint8:
        mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
        x = (x.astype(np.float32) / float(spec["scale"]) - mean) / std
    return np.ascontiguousarray(x, dtype=np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="ONNX file in this bundle (default: the recommended one)")
    ap.add_argument("--input", help=".npy file of images (default: random)")
    ap.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = ap.parse_args(argv)
    with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    spec, labels = manifest["input"], manifest["input"]["class_labels"]
    model = args.model or manifest["recommended_model"]
    if not model.endswith(".onnx"):
        model = manifest["models"]["fp32"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(HERE, model), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    x = load_input(args.input, spec, fixed or 1)
    if fixed and len(x) != fixed:
        x = np.resize(x, (fixed,) + x.shape[1:]).astype(np.float32)
    logits = sess.run(None, {inp.name: x})[0]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, row in enumerate(probs[:8]):
        top = np.argsort(-row)[:5]
        print(f"image {i}: " + ", ".join(f"{labels[k]} {row[k]:.3f}" for k in top))
    one = x[: fixed or 1]
    for _ in range(10):
        sess.run(None, {inp.name: one})
    times = []
    for _ in range(max(1, args.runs)):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: one})
        times.append((time.perf_counter() - t0) * 1e3)
    print(f"{model}: batch {len(one)}, p50 {np.percentile(times, 50):.3f} ms, "
          f"p90 {np.percentile(times, 90):.3f} ms over {len(times)} runs "
          f"(onnxruntime {ort.__version__}, {args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
