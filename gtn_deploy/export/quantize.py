"""INT8 post-training quantisation with NNCF's ONNX backend, gated on the accuracy drop.

NNCF's ONNX backend (not its PyTorch one: that needs a ~40 s C++ extension build and torchao,
and its output needs extra steps before onnxruntime loads it) writes a Q/DQ model that both
onnxruntime and TensorRT (explicit quantisation) read.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from gtn_deploy.errors import ExportError, UsageError, require
from gtn_deploy.export.data import top1
from gtn_deploy.export.onnx import ParityResult, compare_logits, measure_latency_ms, run_session
from gtn_deploy.io_utils import atomic_write_bytes
from gtn_deploy.progress import Steps
from gtn_deploy.runtimes.onnxruntime import inference_session

PRESETS = ("performance", "mixed")
MIN_CALIB_IMAGES = 300


@dataclass(frozen=True)
class PresetResult:
    """One NNCF preset tried: accuracy, parity against fp32 and latency on this host."""

    preset: str
    int8_top1: float
    drop_points: float
    parity: ParityResult
    latency_ms: dict[str, float]
    quantize_s: float


@dataclass(frozen=True)
class QuantResult:
    """The chosen INT8 model and every preset tried."""

    path: Path
    preset: str
    fp32_top1: float
    int8_top1: float
    drop_points: float
    eval_images: int
    calib_images: int
    parity: ParityResult
    fp32_latency_ms: dict[str, float]
    int8_latency_ms: dict[str, float]
    presets: list[PresetResult] = field(default_factory=list)

    def presets_dict(self) -> dict[str, Any]:
        return {p.preset: {**asdict(p), "parity": p.parity.to_dict()} for p in self.presets}


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calib_images: np.ndarray,
                  preset: str = "performance", batch_size: int = 1,
                  on_images: Callable[[int], None] | None = None) -> float:
    """Write an NNCF INT8 (Q/DQ) copy of ``fp32_path`` to ``out_path``; return seconds taken.

    ``on_images(n)`` hears of each calibration batch as NNCF takes it (``calib_count`` in all).
    """
    import onnx

    nncf = require("nncf", "quant")
    if preset not in PRESETS:
        raise UsageError(f"unknown NNCF preset '{preset}'; valid: {', '.join(PRESETS)}")
    if len(calib_images) < MIN_CALIB_IMAGES:
        raise ExportError(f"INT8 calibration needs at least {MIN_CALIB_IMAGES} real images, "
                          f"got {len(calib_images)}")
    nncf.set_log_level(logging.ERROR)
    model = onnx.load(str(fp32_path))
    name = model.graph.input[0].name
    items = [{name: calib_images[i:i + batch_size]}
             for i in range(0, calib_count(len(calib_images), batch_size), batch_size)]

    def taken(item):  # NNCF reads each item once, in its statistics pass
        if on_images is not None:
            on_images(batch_size)
        return item

    start = time.perf_counter()
    # NNCF draws rich progress bars on stdout regardless of its log level: keep them out of
    # the CLI's output (and out of JSON printed by callers); ``taken`` feeds ours instead.
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(items, taken),
                                  preset=nncf.QuantizationPreset(preset), subset_size=len(items))
    seconds = time.perf_counter() - start

    atomic_write_bytes(out_path, quantized.SerializeToString())
    return seconds


def calib_count(n_images: int, batch_size: int = 1) -> int:
    """Calibration images NNCF sees: whole batches only."""
    return n_images - n_images % batch_size


@dataclass(frozen=True)
class Fp32Reference:
    """The fp32 model in onnxruntime: what every INT8 candidate is compared with."""

    logits: np.ndarray
    top1: float
    latency_ms: dict[str, float]


def measure_fp32(fp32_path: str | Path, data, batch_size: int = 1, threads: int = 1,
                 steps: Steps | None = None) -> Fp32Reference:
    """fp32 top-1 on ``data.eval_images`` and this host's latency (step "fp32 accuracy")."""
    steps = steps if steps is not None else Steps("int8", enabled=False)
    with steps.step("fp32 accuracy") as step:
        sess = inference_session(fp32_path, threads)
        logits = _eval_logits(sess, data, steps, "fp32 accuracy")
        ref = Fp32Reference(logits, top1(logits, data.eval_labels),
                            measure_latency_ms(sess, (batch_size, *data.eval_images.shape[1:])))
        step.note = (f"top-1 {ref.top1:.2f}% on {len(logits)} images, "
                     f"{ref.latency_ms['p50_ms']:.3g} ms p50 here")
    return ref


def _eval_logits(sess, data, steps: Steps, label: str) -> np.ndarray:
    with steps.bar(label, len(data.eval_images)) as advance:
        return run_session(sess, data.eval_images, on_images=advance)


def _candidate(out_path: Path, preset: str) -> Path:
    return out_path.with_name(f".{out_path.stem}.{preset}.onnx")


def _try_preset(fp32_path, out_path: Path, data, preset: str, fp32: Fp32Reference,
                batch_size: int, threads: int, steps: Steps) -> PresetResult:
    """Calibrate with one preset, then its accuracy, parity and latency (step "int8 <preset>")."""
    with steps.step(f"int8 {preset}") as step:
        total = calib_count(len(data.calib_images), batch_size)
        with steps.bar(f"int8 {preset} calibration (NNCF)", total) as advance:
            seconds = quantize_onnx(fp32_path, _candidate(out_path, preset), data.calib_images,
                                    preset, batch_size, on_images=advance)
        sess = inference_session(_candidate(out_path, preset), threads)
        logits = _eval_logits(sess, data, steps, f"int8 {preset} accuracy")
        acc = top1(logits, data.eval_labels)
        result = PresetResult(preset, acc, round(fp32.top1 - acc, 4),
                              compare_logits(fp32.logits, logits, "int8"),
                              measure_latency_ms(sess, (batch_size, *data.eval_images.shape[1:])),
                              round(seconds, 3))
        step.note = (f"top-1 {acc:.2f}% (drop {result.drop_points:.2f} points), "
                     f"{result.latency_ms['p50_ms']:.3g} ms p50 here")
    return result


def quantize_presets(fp32_path: str | Path, out_path: str | Path, data,
                     presets: Sequence[str] = PRESETS, batch_size: int = 1,
                     threads: int = 1, steps: Steps | None = None) -> QuantResult:
    """Quantise with each NNCF preset; keep the most accurate one at ``out_path``.

    Accuracy is measured in onnxruntime on ``data.eval_images`` for both models, so the drop
    compares like with like. Latency is this host's and only informs the recommendation.
    ``steps`` reports "fp32 accuracy" and one "int8 <preset>" step per preset.
    """
    steps = steps if steps is not None else Steps("int8", enabled=False)
    out_path = Path(out_path)
    fp32 = measure_fp32(fp32_path, data, batch_size, threads, steps)
    tried = [_try_preset(fp32_path, out_path, data, preset, fp32, batch_size, threads, steps)
             for preset in presets]
    best = max(tried, key=lambda p: (p.int8_top1, -list(presets).index(p.preset)))
    for p in tried:
        if p is best:
            _candidate(out_path, p.preset).replace(out_path)
        else:
            _candidate(out_path, p.preset).unlink(missing_ok=True)
    return QuantResult(out_path, best.preset, fp32.top1, best.int8_top1, best.drop_points,
                       len(data.eval_images), len(data.calib_images), best.parity,
                       fp32.latency_ms, best.latency_ms, tried)


def gate_drop(result: QuantResult, max_drop_points: float = 1.0,
              allow_accuracy_drop: bool = False) -> QuantResult:
    """Raise ExportError (with both accuracies) when INT8 loses more than allowed."""
    if result.drop_points > max_drop_points and not allow_accuracy_drop:
        raise ExportError(
            f"INT8 accuracy gate failed: fp32 top-1 {result.fp32_top1:.2f}% vs int8 "
            f"{result.int8_top1:.2f}% (NNCF preset '{result.preset}', drop "
            f"{result.drop_points:.2f} points > --max-drop {max_drop_points}); pass "
            "--allow-accuracy-drop or --no-int8")
    return result


def quantize_and_gate(fp32_path: str | Path, out_path: str | Path, data,
                      presets: Sequence[str] = PRESETS, max_drop_points: float = 1.0,
                      allow_accuracy_drop: bool = False, batch_size: int = 1,
                      threads: int = 1, steps: Steps | None = None) -> QuantResult:
    """``quantize_presets`` then ``gate_drop`` (step "int8 gate"); a failed gate leaves no
    INT8 file behind."""
    steps = steps if steps is not None else Steps("int8", enabled=False)
    result = quantize_presets(fp32_path, out_path, data, presets, batch_size, threads, steps)
    with steps.step("int8 gate") as step:
        step.note = (f"fp32 {result.fp32_top1:.2f}% vs int8 {result.int8_top1:.2f}% "
                     f"(preset {result.preset}, drop {result.drop_points:.2f} points, "
                     f"max {max_drop_points:g})")
        step.status = ("passed" if result.drop_points <= max_drop_points
                       else "over the limit, kept as allowed (never recommended)")
        try:
            return gate_drop(result, max_drop_points, allow_accuracy_drop)
        except ExportError:
            Path(out_path).unlink(missing_ok=True)
            raise
