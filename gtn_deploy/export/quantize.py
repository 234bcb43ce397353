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
from typing import Any, Sequence

import numpy as np

from gtn_deploy.errors import ExportError, UsageError, require
from gtn_deploy.export.data import top1
from gtn_deploy.export.onnx import (ParityResult, compare_logits, measure_latency_ms,
                                    ort_session, run_session)

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
                  preset: str = "performance", batch_size: int = 1) -> float:
    """Write an NNCF INT8 (Q/DQ) copy of ``fp32_path`` to ``out_path``; return seconds taken."""
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
             for i in range(0, len(calib_images) - batch_size + 1, batch_size)]
    start = time.perf_counter()
    # NNCF draws rich progress bars on stdout regardless of its log level: keep them out of
    # the CLI's output (and out of JSON printed by callers).
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, nncf.Dataset(items),
                                  preset=nncf.QuantizationPreset(preset), subset_size=len(items))
    seconds = time.perf_counter() - start
    from gtn_deploy.io_utils import atomic_write_bytes

    atomic_write_bytes(out_path, quantized.SerializeToString())
    return seconds


def quantize_presets(fp32_path: str | Path, out_path: str | Path, data,
                     presets: Sequence[str] = PRESETS, batch_size: int = 1,
                     threads: int = 1) -> QuantResult:
    """Quantise with each NNCF preset; keep the most accurate one at ``out_path``.

    Accuracy is measured in onnxruntime on ``data.eval_images`` for both models, so the drop
    compares like with like. Latency is this host's and only informs the recommendation.
    """
    out_path = Path(out_path)
    shape = (batch_size, *data.eval_images.shape[1:])
    fp32_sess = ort_session(fp32_path, threads)
    fp32_logits = run_session(fp32_sess, data.eval_images)
    fp32_top1 = top1(fp32_logits, data.eval_labels)
    fp32_latency = measure_latency_ms(fp32_sess, shape)
    tried: list[PresetResult] = []
    for preset in presets:
        tmp = out_path.with_name(f".{out_path.stem}.{preset}.onnx")
        seconds = quantize_onnx(fp32_path, tmp, data.calib_images, preset, batch_size)
        sess = ort_session(tmp, threads)
        logits = run_session(sess, data.eval_images)
        acc = top1(logits, data.eval_labels)
        tried.append(PresetResult(preset, acc, round(fp32_top1 - acc, 4),
                                  compare_logits(fp32_logits, logits, "int8"),
                                  measure_latency_ms(sess, shape), round(seconds, 3)))
    best = max(tried, key=lambda p: (p.int8_top1, -list(presets).index(p.preset)))
    for p in tried:
        tmp = out_path.with_name(f".{out_path.stem}.{p.preset}.onnx")
        if p is best:
            tmp.replace(out_path)
        else:
            tmp.unlink(missing_ok=True)
    return QuantResult(out_path, best.preset, fp32_top1, best.int8_top1, best.drop_points,
                       len(data.eval_images), len(data.calib_images), best.parity,
                       fp32_latency, best.latency_ms, tried)


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
                      threads: int = 1) -> QuantResult:
    """``quantize_presets`` then ``gate_drop``; a failed gate leaves no INT8 file behind."""
    result = quantize_presets(fp32_path, out_path, data, presets, batch_size, threads)
    try:
        return gate_drop(result, max_drop_points, allow_accuracy_drop)
    except ExportError:
        Path(out_path).unlink(missing_ok=True)
        raise
