"""ONNX export of real students: checker, fixed/dynamic batch, parity gate on real images."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
import torch

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.errors import ExportError, UsageError
from gtn_deploy.export.data import load_export_data
from gtn_deploy.export.onnx import (InputSpec, compare_logits, export_onnx, parity_gate,
                                    run_session, torch_logits, torch_threads)
from gtn_deploy.runtimes.onnxruntime import inference_session
from gtn_deploy.supernet import build_student, recalibrate_bn

SPACE = get_space("fashion-mnist")


@pytest.fixture(scope="module")
def data():
    return load_export_data(SPACE.task, calib_images=300, eval_images=512, seed=1)


@pytest.fixture(scope="module")
def student(data):
    """A random student whose BN statistics come from real images, so logits are not flat."""
    torch.manual_seed(0)
    model = build_student(SPACE, SPACE.sample(random.Random(3)))
    batches = [torch.from_numpy(data.calib_images[i:i + 100]) for i in range(0, 300, 100)]
    with torch_threads(1):
        recalibrate_bn(model, batches)
    return model.eval()


@pytest.mark.parametrize("dynamic", [False, True])
def test_export_checks_and_matches_pytorch(tmp_path, student, data, dynamic):
    spec = InputSpec(1, 28, 28, dynamic_batch=dynamic)
    info = export_onnx(student, spec, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert info["opset"] == 17
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in proto.opset_import)
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert (dim0.dim_param == "batch") if dynamic else (dim0.dim_value == 1)
    result = parity_gate(student, tmp_path / "m.onnx", data.eval_images[:256])
    assert result.passed and result.images == 256
    assert result.max_abs_diff <= 1e-4 and result.top1_agreement == 1.0
    ref = torch_logits(student, data.eval_images[:64])
    assert float(np.ptp(ref)) > 0.1  # the comparison is not between two flat outputs
    if dynamic:  # one call with the whole batch
        sess = inference_session(tmp_path / "m.onnx")
        out = sess.run(None, {"input": data.eval_images[:64]})[0]
        assert np.abs(out - ref).max() < 1e-4


def test_parity_gate_catches_a_different_model(tmp_path, student, data):
    export_onnx(student, InputSpec(1, 28, 28), tmp_path / "m.onnx")
    other = build_student(SPACE, SPACE.min_arch()).eval()
    with pytest.raises(ExportError, match="parity failed"):
        parity_gate(other, tmp_path / "m.onnx", data.eval_images[:256])


def test_parity_gate_needs_256_images(tmp_path, student, data):
    export_onnx(student, InputSpec(1, 28, 28), tmp_path / "m.onnx")
    with pytest.raises(ExportError, match="at least 256"):
        parity_gate(student, tmp_path / "m.onnx", data.eval_images[:100])


def test_opset_range_and_fixed_batch_padding(tmp_path, student, data):
    with pytest.raises(UsageError, match="--opset 11"):
        export_onnx(student, InputSpec(1, 28, 28), tmp_path / "x.onnx", opset=11)
    assert not (tmp_path / "x.onnx").exists()
    export_onnx(student, InputSpec(1, 28, 28, batch_size=4), tmp_path / "b4.onnx", opset=13)
    out = run_session(inference_session(tmp_path / "b4.onnx"), data.eval_images[:10])  # 10 = 4+4+2
    assert out.shape == (10, 10)
    assert np.abs(out - torch_logits(student, data.eval_images[:10])).max() < 1e-4


def test_compare_logits_tolerances():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert compare_logits(ref, ref + 5e-5, "fp32").passed
    assert not compare_logits(ref, ref + 5e-4, "fp32").passed
    assert compare_logits(ref, ref + 5e-2, "fp16").passed
    flipped = compare_logits(ref, ref[:, ::-1].copy(), "int8")  # atol ignored, top-1 decides
    assert flipped.top1_agreement == 0.0 and not flipped.passed
    with pytest.raises(UsageError):
        compare_logits(ref, ref, "bf16")
