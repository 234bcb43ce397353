"""Engine build + parity with the TensorRT Python API (runs only where tensorrt imports)."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.tensorrt


def test_build_engine_and_parity(tmp_path):
    trt = pytest.importorskip("tensorrt")
    pytest.importorskip("polygraphy")
    import torch

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.export.data import load_export_data
    from gtn_deploy.export.onnx import InputSpec, export_onnx, parity_check_engine
    from gtn_deploy.runtimes.tensorrt import build_engine, plan_engine
    from gtn_deploy.supernet import build_student, recalibrate_bn

    space = get_space("fashion-mnist")
    data = load_export_data(space.task, calib_images=300, eval_images=256)
    torch.manual_seed(0)
    model = build_student(space, space.sample(random.Random(0)))
    recalibrate_bn(model, [torch.from_numpy(data.calib_images[:150])])
    export_onnx(model.eval(), InputSpec(1, 28, 28, dynamic_batch=True), tmp_path / "model.onnx")
    plan = plan_engine(trt.__version__, "fp32", "input", (8, 1, 28, 28), dynamic_batch=True,
                       max_batch=8)
    cache = tmp_path / "timing.cache"
    engine = build_engine(tmp_path / "model.onnx", plan, tmp_path / "model.engine", cache)
    assert engine.stat().st_size > 0 and cache.stat().st_size > 0
    result = parity_check_engine(engine, tmp_path / "model.onnx", data.eval_images, "fp32", 8)
    assert result.passed, result
    # A second build reuses the timing cache written by the first.
    build_engine(tmp_path / "model.onnx", plan, tmp_path / "model2.engine", cache)
