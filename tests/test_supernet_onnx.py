"""Every extracted student exports to ONNX (opset 17) and matches PyTorch in onnxruntime."""

from __future__ import annotations

import dataclasses
import functools
import io
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from gtn_deploy.spaces.mbconv import SPACES
from gtn_deploy.supernet import Supernet




OPSET = 17
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # exporter internals


@functools.lru_cache(maxsize=None)
def _supernet(task: str) -> Supernet:
    return Supernet(SPACES[task])


def _export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    # TorchScript exporter (dynamo=False) on purpose: ~0.3 s per student here against 7-11 s
    # for the dynamo exporter, which would also need a batch >= 2 example for a dynamic batch
    # axis. Our students are plain conv/BN/activation/linear graphs with no data-dependent
    # control flow, which the tracer captures exactly; the parity check below proves it.
    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})

    return buf.getvalue()


def _students():
    for i, (task, space) in enumerate(SPACES.items()):
        rng = random.Random(200 + i)
        archs = [space.max_arch(), space.min_arch(), space.sample(rng)]
        if task == "imagenet":
            archs = [dataclasses.replace(a, resolution=128) for a in archs[1:]]
        for arch in archs:
            yield pytest.param(task, arch, id=f"{task}-{arch.summary().replace(' ', '_')}")


@pytest.mark.parametrize("task,arch", list(_students()))
def test_student_exports_and_matches_onnxruntime(task, arch):
    torch.manual_seed(0)
    net = _supernet(task)
    student = net.extract(arch).eval()
    for m in student.modules():  # non-trivial BN so that parity is not a check of zeros
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    space = net.space
    example = torch.randn(1, space.task.in_channels, arch.resolution, arch.resolution)
    model = onnx.load_from_string(_export(student, example))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= OPSET
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "Gemm"} <= ops
    node_names = " ".join(node.name for node in model.graph.node)
    assert "stages.0/blocks.0/depthwise" in node_names  # the calibration maps names to blocks
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # shared CPU: see tests/conftest.py
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    x = torch.randn(3, space.task.in_channels, arch.resolution, arch.resolution)
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = student(x).numpy()
    assert got.shape == (3, space.task.num_classes)
    assert np.abs(got - want).max() <= 1e-4
