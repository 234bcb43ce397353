"""NNCF INT8 (ONNX backend) on real calibration images, and the accuracy-drop gate."""

from __future__ import annotations

import dataclasses
import io
import re

import onnx
import pytest
from test_export_helpers import SPACE, trained_student_dir
from test_progress import plain

from gtn_deploy.errors import ExportError, UsageError
from gtn_deploy.export.data import load_export_data
from gtn_deploy.export.onnx import InputSpec, export_onnx
from gtn_deploy.export.quantize import calib_count, gate_drop, quantize_onnx, quantize_presets
from gtn_deploy.progress import Steps
from gtn_deploy.supernet import load_student


@pytest.fixture(scope="module")
def data():
    return load_export_data(SPACE.task, calib_images=300, eval_images=500, seed=2)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    model, _ = load_student(trained_student_dir(tmp_path_factory))
    path = tmp_path_factory.mktemp("q") / "model.onnx"
    export_onnx(model, InputSpec(1, 28, 28), path)
    return path


@pytest.fixture(scope="module")
def quantized_on_a_terminal(tmp_path_factory, fp32_model, data):
    """One preset, its progress drawn as on a terminal: (result, what the terminal got)."""
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TTY_COMPATIBLE", "1")
        with Steps("int8", ["fp32 accuracy", "int8 performance"], stream=stream) as steps:
            result = quantize_presets(fp32_model, out, data, presets=("performance",),
                                      steps=steps)
    return result, plain(stream.getvalue())


@pytest.fixture(scope="module")
def quantized(quantized_on_a_terminal):
    return quantized_on_a_terminal[0]


def test_qdq_model_keeps_accuracy_and_decisions(quantized):
    ops = {n.op_type for n in onnx.load(str(quantized.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert quantized.preset == "performance" and quantized.calib_images == 300
    assert quantized.eval_images == 500
    assert quantized.fp32_top1 > 30  # a student that learned something (10 classes)
    assert abs(quantized.drop_points) < 5
    assert quantized.drop_points == pytest.approx(quantized.fp32_top1 - quantized.int8_top1,
                                                  abs=1e-3)
    assert quantized.parity.top1_agreement >= 0.9
    assert quantized.fp32_latency_ms["p50_ms"] > 0 and quantized.int8_latency_ms["p50_ms"] > 0
    assert sorted(p.name for p in quantized.path.parent.iterdir()) == ["model.int8.onnx"]


def test_gate_reports_both_numbers(quantized):
    assert gate_drop(quantized, max_drop_points=quantized.drop_points + 0.01) is quantized
    worse = dataclasses.replace(quantized, int8_top1=quantized.fp32_top1 - 1.5, drop_points=1.5)
    with pytest.raises(ExportError) as err:
        gate_drop(worse, max_drop_points=1.0)
    msg = str(err.value)
    assert f"{worse.fp32_top1:.2f}%" in msg and f"{worse.int8_top1:.2f}%" in msg
    assert "--allow-accuracy-drop" in msg
    assert gate_drop(worse, 1.0, allow_accuracy_drop=True) is worse
    assert gate_drop(worse, max_drop_points=2.0) is worse


def test_calibration_and_accuracy_show_bars_with_eta(quantized_on_a_terminal):
    _, out = quantized_on_a_terminal
    assert re.search(r"  int8 performance calibration \(NNCF\) +━+ +\d+/300 .*eta", out), out
    assert re.search(r"  int8 performance accuracy +━+ +\d+/500", out), out
    assert "✓ int8 1/2 fp32 accuracy: done, top-1" in out
    assert "✓ int8 2/2 int8 performance: done, top-1" in out and "drop" in out
    assert "Statistics collection" not in out  # NNCF's own bars stay out


def test_calibration_reports_every_image_nncf_takes(tmp_path, fp32_model, data):
    """The calibration bar's total is what NNCF reads: each image once, whole batches."""
    taken: list[int] = []
    quantize_onnx(fp32_model, tmp_path / "q.onnx", data.calib_images, on_images=taken.append)
    assert sum(taken) == calib_count(len(data.calib_images)) == 300 and set(taken) == {1}
    assert calib_count(301, 2) == 300


def test_calibration_needs_300_real_images(tmp_path, fp32_model, data):
    with pytest.raises(ExportError, match="at least 300"):
        quantize_onnx(fp32_model, tmp_path / "q.onnx", data.calib_images[:100])
    with pytest.raises(UsageError, match="preset"):
        quantize_onnx(fp32_model, tmp_path / "q.onnx", data.calib_images, preset="fast")
    assert list(tmp_path.iterdir()) == []
