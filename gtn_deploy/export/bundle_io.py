"""What run_onnx.py and run_trt.py share: the bundle's manifest and labels, images turned into
model input exactly as the manifest's ``preprocessing`` says, batching, and the printed results.

Copied verbatim into every bundle beside those scripts. Like them it runs on Python 3.8
(JetPack 5) with numpy alone: no gtn_deploy, no torch, no annotations that 3.8 evaluates.
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import time

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


def fail(message):
    """Stop with one ``error:`` line on stderr and exit status 1, no traceback."""
    raise SystemExit("error: " + message)


def require(module, install):
    """Import an optional runtime here, not at the top, so a missing one is one clear line."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        fail("%s does not import (%s); %s" % (module, str(exc).splitlines()[0], install))


def parser(doc):
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--input", nargs="+", metavar="FILE",
                    help=".npy arrays (uint8 pixels N,H,W / N,H,W,C / N,C,H,W, or float32 "
                    "already normalised NCHW) or image files (need Pillow); default: random")
    ap.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    ap.add_argument("--top", type=int, default=5, help="classes printed per image (default 5)")
    ap.add_argument("--json", action="store_true", help="print only one JSON line: the timing "
                    "(p50/p90/p95/p99 in ms) and this machine's fingerprint")
    return ap


def read_bundle(folder):
    """(manifest, preprocessing spec, class labels) of the bundle in ``folder``."""
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        with open(os.path.join(folder, "labels.txt"), encoding="utf-8") as fh:
            labels = fh.read().splitlines()
    except (OSError, ValueError) as exc:
        fail("cannot read this bundle: %s" % exc)
    prep = manifest.get("preprocessing")
    if not isinstance(prep, dict):
        fail("manifest.json has no preprocessing spec; re-export the bundle with gtn_deploy")
    classes = manifest["output"]["shape"][-1]
    if len(labels) != classes:
        fail("labels.txt has %d lines for %d classes" % (len(labels), classes))
    return manifest, prep, labels


def load_inputs(paths, prep, batch):
    """One float32 batch in the model's layout: every image of every file, or, without
    files, ``batch`` random (already normalised) inputs."""
    # channel_order is "L" or "RGB": one letter a channel
    shape = [len(prep["channel_order"])] + [prep["crop"]["height"], prep["crop"]["width"]]
    if not paths:
        return np.random.default_rng(0).standard_normal([batch] + shape).astype(prep["dtype"])
    parts = []
    for path in paths:
        x = _read(path, prep)
        if x.size == 0:
            continue
        if x.dtype.kind == "f":  # already normalised by the caller
            if list(x.shape[1:]) != shape or x.ndim != 4:
                fail("%s: float input must be normalised N,%s; got %s"
                     % (path, ",".join(map(str, shape)), x.shape))
            parts.append(x.astype(prep["dtype"]))
        else:
            lo, hi = prep["value_range"]
            if x.min() < lo or x.max() > hi:
                fail("%s: pixel values must lie in %g..%g" % (path, lo, hi))
            parts.append(preprocess(_to_nhwc(x, path, shape[0]), prep))
    if not parts:
        fail("no images in %s" % ", ".join(paths))
    return np.ascontiguousarray(np.concatenate(parts))


def _read(path, prep):
    if path.lower().endswith(IMAGE_SUFFIXES):
        pil = require("PIL.Image", "reading image files needs Pillow: pip install pillow "
                      "(or pass a .npy of uint8 pixels)")
        try:
            with pil.open(path) as img:  # the same conversion the training data went through
                return np.asarray(img.convert("L" if prep["color"] == "grayscale" else "RGB"))[None]
        except OSError as exc:
            fail("%s: %s" % (path, exc))
    try:
        x = np.load(path, allow_pickle=False)  # never unpickle what a user hands us
    except (OSError, ValueError) as exc:
        fail("%s: %s" % (path, exc))
    if x.dtype.kind not in "uif":
        fail("%s: expected uint8 pixels or float32, got dtype %s" % (path, x.dtype))
    return x


def _to_nhwc(x, path, channels):
    """Pixels in any usual layout -> N,H,W,C (C as stored: 1, 3 or 4)."""
    if x.ndim == 2:
        return x[None, :, :, None]
    if x.ndim == 3:  # a grey model reads N,H,W (a batch); a colour model one H,W,C / C,H,W
        if channels == 1 and x.shape[-1] not in (3, 4):
            return x[:, :, :, None]
        x = x[None]
    if x.ndim != 4:
        fail("%s: cannot read %d-d pixels as images" % (path, x.ndim))
    if x.shape[1] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = x.transpose(0, 2, 3, 1)
    if x.shape[-1] not in (1, 3, 4):
        fail("%s: pixels of shape %s have no 1, 3 or 4 channel axis" % (path, x.shape))
    return x


def preprocess(pixels, prep):
    """N,H,W,C uint8 -> the model's input, step by step as the manifest's spec says."""
    x = pixels[..., :3].astype(np.float32)  # alpha carries no class information
    if prep["color"] == "grayscale" and x.shape[-1] == 3:
        x = np.round((x * np.asarray(prep["grayscale_weights"], np.float32)).sum(-1, keepdims=True))
    elif prep["color"] == "rgb" and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    crop = prep["crop"]
    x = np.stack([_resize_crop(img, prep["resize"]["shorter_side"], crop["height"],
                               crop["width"]) for img in x])
    x = (x / float(prep["scale"]) - np.asarray(prep["mean"], np.float32)) \
        / np.asarray(prep["std"], np.float32)
    return x.transpose(0, 3, 1, 2).astype(prep["dtype"])  # layout NCHW


def _resize_crop(img, side, height, width):
    """Shorter side to ``side`` (bilinear), then the centre ``height`` x ``width``; rounded
    like the uint8 images the network was trained on."""
    h, w = img.shape[:2]
    if (h, w) != (height, width):
        s = side / float(min(h, w))
        img = _bilinear(img, max(side, int(round(h * s))), max(side, int(round(w * s))))
        top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
        img = np.round(img[top:top + height, left:left + width])
    return img


def _bilinear(img, out_h, out_w):
    """Half-pixel-centre bilinear resize (torch's align_corners=False, no antialias)."""
    y0, y1, wy = _taps(img.shape[0], out_h)
    x0, x1, wx = _taps(img.shape[1], out_w)
    wx = wx[None, :, None]
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return top * (1 - wy[:, None, None]) + bottom * wy[:, None, None]


def _taps(n_in, n_out):
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / float(n_out)) - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)


def run_batches(run, x, batch, pad):
    """``run`` over every row of ``x`` in chunks of ``batch`` rows (None: one run). With
    ``pad`` (a fixed-batch model) the last chunk is filled up with copies of its last row and
    their outputs dropped."""
    if batch is None:
        return run(x)
    out = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        n = len(chunk)
        if pad and n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        out.append(np.asarray(run(chunk))[:n])
    return np.concatenate(out)


def print_predictions(logits, labels, top):
    logits = np.asarray(logits, np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for i, row in enumerate(probs):
        best = np.argsort(-row)[:max(1, top)]
        print("image %d: " % i + ", ".join("%s %.3f" % (labels[k], row[k]) for k in best))


def timing_batch(x, batch):
    """One model-sized batch for timing (rows repeated when fewer images were given)."""
    return np.ascontiguousarray(np.resize(x, (batch,) + x.shape[1:]), dtype=x.dtype)


def time_ms(run, x, runs, warmup=10):
    """Latency summary of ``run(x)`` after ``warmup`` untimed runs: p50_ms ... p99_ms, runs."""
    for _ in range(max(0, warmup)):
        run(x)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1e3)
    out = {"p%d_ms" % q: float(np.percentile(times, q)) for q in (50, 90, 95, 99)}
    out.update(mean_ms=float(np.mean(times)), min_ms=float(np.min(times)),
               max_ms=float(np.max(times)), runs=len(times), warmup=max(0, warmup),
               batch_size=len(x), throughput_ips=len(x) * 1e3 / float(np.mean(times)))
    return out


def print_json(model, timing, runtime, version, detail):
    """The --json document, one line: what ran, its timing and where (``fingerprint``)."""
    print(json.dumps({"kind": "gtn_deploy.bundle_timing", "model": model, "runtime": runtime,
                      "runtime_version": version, "detail": detail, "timing": timing,
                      "machine": fingerprint(runtime, version)}))


def fingerprint(runtime, version):
    """This machine as a benchmark reader needs it: CPU, OS, versions, Jetson power mode."""
    return {"hostname": platform.node(), "cpu_model": _cpu_model(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "os": _os_name(), "kernel": platform.release(),
            "python": platform.python_version(), "numpy": np.__version__,
            runtime: version, "power_mode": _power_mode()}


def _read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _cpu_model():
    # x86 names the CPU "model name"; ARM boards often only in the device tree (Jetson)
    for line in _read_text("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    board = _read_text("/proc/device-tree/model").strip("\x00 \n")
    return board or platform.processor() or None


def _os_name():
    for line in _read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def _power_mode():
    """``nvpmodel -q`` (Jetson) as one line, or None where there is no nvpmodel."""
    try:
        out = subprocess.run(["nvpmodel", "-q"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None
