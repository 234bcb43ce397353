#!/usr/bin/env python3
"""Run this bundle's ONNX model with onnxruntime and numpy only; print top-5 and latency.

    python3 run_onnx.py                      # random input, the recommended model
    python3 run_onnx.py --input images.npy   # uint8 (N,H,W)/(N,C,H,W) pixels or float32 normalised
    python3 run_onnx.py --model model.int8.onnx --runs 200

Every image given is classified (a fixed-batch model runs them in padded chunks). The best
execution provider available is used (TensorRT, CUDA, then CPU) and named in the output.
Copied verbatim into every bundle by gtn_deploy; it must not import gtn_deploy or torch, and
it runs on Python 3.8 (JetPack 5) with numpy and onnxruntime alone.
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


# Best first: an execution provider is used when this onnxruntime build offers it.
PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                       "CPUExecutionProvider")


def pick_providers(requested=None):
    available = ort.get_available_providers()
    if requested:
        if requested not in available:
            raise SystemExit("error: provider %s is not in this onnxruntime build (available: "
                             "%s)" % (requested, ", ".join(available)))
        return [requested]
    return [p for p in PREFERRED_PROVIDERS if p in available] or available


def predict(sess, x, fixed):
    """Logits for every row of ``x``: in chunks of the model's fixed batch (the last one
    padded, the padding dropped) or, with a dynamic batch, in one run."""
    name = sess.get_inputs()[0].name
    if not fixed:
        return sess.run(None, {name: x})[0]
    out = []
    for start in range(0, len(x), fixed):
        chunk = x[start:start + fixed]
        pad = fixed - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out.append(sess.run(None, {name: chunk})[0][:fixed - pad])
    return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="ONNX file in this bundle (default: the recommended one)")
    ap.add_argument("--input", help=".npy file of images (default: random)")
    ap.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--provider", help="execution provider (default: the best available of "
                    + ", ".join(PREFERRED_PROVIDERS) + ")")
    args = ap.parse_args(argv)
    with open(os.path.join(HERE, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    spec, labels = manifest["input"], manifest["input"]["class_labels"]
    model = args.model or manifest["recommended_model"]
    if not model.endswith(".onnx"):
        model = manifest["models"]["fp32"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(os.path.join(HERE, model), opts,
                                providers=pick_providers(args.provider))
    provider = sess.get_providers()[0]
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    x = load_input(args.input, spec, fixed or 1)
    logits = predict(sess, x, fixed)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, row in enumerate(probs):
        top = np.argsort(-row)[:5]
        print("image %d: " % i + ", ".join("%s %.3f" % (labels[k], row[k]) for k in top))
    one = x[:1] if not fixed else predict_batch(x, fixed)
    for _ in range(10):
        sess.run(None, {inp.name: one})
    times = []
    for _ in range(max(1, args.runs)):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: one})
        times.append((time.perf_counter() - t0) * 1e3)
    print("%s: %d image(s) classified; timing batch %d, p50 %.3f ms, p90 %.3f ms over %d runs "
          "(onnxruntime %s, %s, %d thread(s))"
          % (model, len(x), len(one), np.percentile(times, 50), np.percentile(times, 90),
             len(times), ort.__version__, provider, args.threads))
    return 0


def predict_batch(x, fixed):
    """One model-sized batch for timing (rows repeated when fewer images were given)."""
    return np.resize(x, (fixed,) + x.shape[1:]).astype(np.float32)


if __name__ == "__main__":
    sys.exit(main())
