"""The text parts of a bundle: manifest dict, precision recommendation, README (no torch)."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gtn_deploy import __version__
from gtn_deploy.io_utils import sha256_file
from gtn_deploy.manifest import BUNDLE_KIND, BUNDLE_SCHEMA_VERSION
from gtn_deploy.spaces.base import Space


def recommend_precision(profile, int8_available: bool,
                        host_latency_ms: dict[str, dict[str, float]] | None) -> tuple[str, str]:
    """The precision a bundle recommends for ``profile``, with the reason in words.

    TensorRT devices follow the profile (its preferred precision if supported and, for INT8,
    only when an INT8 model passed the gate; else fp16, else fp32). CPU runtimes get INT8 only
    when the profile prefers it *and* onnxruntime measured it faster than fp32: on x86 without
    VNNI, NNCF's INT8 model ran several times slower than fp32 at batch 1.
    """
    allowed = tuple(profile.precisions) or ("fp32",)
    preferred = profile.preferred_precision
    if profile.runtime.name.lower() == "tensorrt":
        for p in (preferred, "fp16", "fp32"):
            if p in allowed and (p != "int8" or int8_available):
                why = "profile's preferred precision" if p == preferred else (
                    f"fallback: preferred {preferred} " +
                    ("has no INT8 model that passed the gate" if preferred == "int8"
                     else "is not supported"))
                return p, f"TensorRT: {why}"
        return "fp32", "TensorRT: fp32 (no other precision listed by the profile)"
    lat = host_latency_ms or {}
    if preferred == "int8" and int8_available and "int8" in lat and "fp32" in lat:
        ratio = lat["int8"]["p50_ms"] / lat["fp32"]["p50_ms"]
        if ratio < 1.0:
            return "int8", f"profile prefers int8 and onnxruntime int8 ran {1 / ratio:.2f}x faster"
        return "fp32", (f"profile prefers int8 but onnxruntime int8 ran {ratio:.2f}x slower "
                        "than fp32 at batch 1 on the export host")
    if "int8" in lat and "fp32" in lat:
        ratio = lat["int8"]["p50_ms"] / lat["fp32"]["p50_ms"]
        return "fp32", (f"profile prefers {preferred}; onnxruntime int8/fp32 latency ratio "
                        f"{ratio:.2f} on the export host")
    return "fp32", f"profile prefers {preferred}; CPU runtimes run fp32"


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest and build/."""
    out = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel == "manifest.json" or rel.split("/")[0] == "build":
            continue
        out[rel] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
    return out


def tool_versions(int8: bool) -> dict[str, str | None]:
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"gtn_deploy": __version__, "python": platform.python_version(),
            "torch": version("torch"), "onnx": version("onnx"),
            "onnxruntime": version("onnxruntime"), "nncf": version("nncf") if int8 else None}


def preprocessing(space: Space, resolution: int) -> dict[str, Any]:
    """How pixels become the model's input, complete enough for a script without gtn_deploy
    (the bundle's bundle_io.py follows it step by step, in this order)."""
    task = space.task
    gray = task.in_channels == 1
    return {
        "input_pixels": "uint8", "value_range": [0, 255],
        "color": "grayscale" if gray else "rgb", "channel_order": "L" if gray else "RGB",
        # colour photos given to a grey model: ITU-R 601-2 luma, Pillow's convert("L")
        "grayscale_weights": [0.299, 0.587, 0.114] if gray else None,
        # only when the image is not already resolution x resolution, as data/sources.py did
        "resize": {"shorter_side": resolution, "interpolation": "bilinear"},
        "crop": {"height": resolution, "width": resolution, "position": "center"},
        "scale": 255.0, "mean": list(task.mean), "std": list(task.std),  # (x / scale - mean) / std
        "layout": "NCHW", "dtype": "float32",
    }


def budget_entry(profile, budget_ms: float | None) -> dict[str, Any]:
    """The device's latency budget as the bundle was planned for it."""
    b = profile.budgets
    return {"latency_ms": round(float(budget_ms if budget_ms is not None else b.latency_ms), 6),
            "percentile": b.percentile, "batch_size": b.batch_size,
            "source": "plan" if budget_ms is not None else "profile"}


@dataclass(frozen=True)
class ManifestParts:
    """What a bundle's manifest says, gathered while the export runs (all but the files'
    hashes, which exist only once every file is written)."""

    name: str
    arch: Any
    space: Any
    spec: Any  # export.onnx.InputSpec
    labels: list[str]
    models: dict[str, str | None]  # precision -> ONNX file
    recommended: tuple[str, str]  # (precision, reason)
    metrics: dict[str, Any]
    latency: dict[str, Any] | None  # the device's predicted latency
    profile: Any
    budget: dict[str, Any] | None
    versions: dict[str, str | None]
    provenance: dict[str, Any]
    export: dict[str, Any]


def build_manifest(p: ManifestParts, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest document of ``p`` with ``files`` (name -> sha256 and bytes)."""
    precision, reason = p.recommended
    rec_model = p.models["int8"] if precision == "int8" else p.models["fp32"]
    spec, task, profile = p.spec, p.space.task, p.profile
    shape = ["batch" if spec.dynamic_batch else spec.batch_size, *spec.shape[1:]]
    return {
        "schema_version": BUNDLE_SCHEMA_VERSION, "kind": BUNDLE_KIND,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": p.name, "arch": p.arch.to_dict(), "arch_summary": p.arch.summary(),
        "space": p.space.name, "family": p.space.family,
        "input": {"name": spec.name, "shape": shape, "dynamic_batch": spec.dynamic_batch,
                  "dtype": "float32", "layout": "NCHW", "mean": list(task.mean),
                  "std": list(task.std), "scale": 255.0, "class_labels": list(p.labels)},
        "output": {"name": spec.output_name, "shape": [shape[0], task.num_classes]},
        "preprocessing": preprocessing(p.space, spec.shape[-1]),
        "models": p.models, "recommended_precision": precision,
        "recommended_model": rec_model, "recommendation_reason": reason,
        "files": files, "metrics": p.metrics, "latency_prediction": p.latency,
        "device": {"id": profile.id, "profile_sha256": profile.content_hash,
                   "runtime": {"name": profile.runtime.name, "version": profile.runtime.version},
                   **({"budget": p.budget} if p.budget else {})},
        "versions": p.versions, "provenance": p.provenance, "export": p.export,
    }


def readme(manifest: dict[str, Any]) -> str:
    """A short per-bundle README (written before the manifest, so it takes the facts)."""
    m, met = manifest, manifest["metrics"]
    lat = m.get("latency_prediction") or {}
    int8 = (f"{met['int8_top1']:.2f}% (drop {met['int8_drop_points']:.2f} points, "
            f"NNCF preset {met.get('int8_preset')})" if met.get("int8_top1") is not None
            else "not made")
    pred = (f"{lat['latency_ms']:.3f} ms ({lat['low_ms']:.3f}-{lat['high_ms']:.3f}, tier "
            f"{lat['tier']}, {lat['precision']}, batch {lat['batch_size']})" if lat else "n/a")
    prep = _describe_preprocessing(m["preprocessing"])
    parity = "\n".join(f"| {k} | {v['max_abs_diff']:.3g} | {v['top1_agreement']:.4f} | "
                       f"{v['images']} | {'yes' if v['passed'] else 'no'} |"
                       for k, v in met.get("parity", {}).items())
    if m["device"]["runtime"]["name"].lower() == "tensorrt":
        engine = ("    ./build_engine.sh               # on the device: TensorRT engine into "
                  "build/\n    python3 run_trt.py              # that engine; needs tensorrt, "
                  "numpy and\n                                    # cuda-python or pycuda\n\n"
                  "Engines are never shipped: TensorRT engines and timing caches "
                  "only run on the GPU,\nTensorRT and CUDA versions that built them.")
    else:  # a CPU runtime runs the ONNX model itself: no engine to build
        engine = (f"\nThe device runs {m['device']['runtime']['name']}: the ONNX model is what "
                  "it runs, no engine\nis built.")
    return f"""# Bundle `{m['name']}`

Student `{m['arch_summary']}` ({m['space']}) exported for device `{m['device']['id']}`
({m['device']['runtime']['name']} {m['device']['runtime']['version']}).

- Recommended: **{m['recommended_precision']}** with `{m['recommended_model']}` ({m['recommendation_reason']})
- fp32 top-1 (onnxruntime, {met['eval_images']} test images): {met['fp32_top1']:.2f}%
- int8 top-1: {int8}
- Predicted latency on the device: {pred}

| parity | max abs logit diff | top-1 agreement | images | passed |
|---|---|---|---|---|
{parity}

## Use

    gtnd bundle verify .            # schema, every sha256, runs in onnxruntime
    python3 run_onnx.py             # needs only onnxruntime + numpy; --input images.npy
{engine}

The scripts print class names from `labels.txt` and share their pre- and post-processing
(`bundle_io.py`, following the manifest's `preprocessing`); they run on Python 3.8 and need
neither gtn_deploy nor torch.

Input: {m['input']['layout']} float32 {m['input']['shape']}: {prep}.
"""


def _describe_preprocessing(p: dict[str, Any]) -> str:
    crop = p["crop"]
    return (f"{p['value_range'][0]}-{p['value_range'][1]} {p['input_pixels']} pixels as "
            f"{p['color']} ({p['channel_order']}); if not {crop['height']}x{crop['width']}, "
            f"shorter side resized ({p['resize']['interpolation']}) to "
            f"{p['resize']['shorter_side']} and the {crop['position']} "
            f"{crop['height']}x{crop['width']} cropped; then x / {p['scale']:g}, (x - mean) / std "
            f"with mean {p['mean']} and std {p['std']}")
