"""What every network family promises, run over each registered family: the extracted
student computes what the supernet computes, the cost model's params and FLOPs are the
modules' (FLOPs against torch's FlopCounterMode) and its layers are the student's modules,
and the student exports to ONNX with the same outputs in onnxruntime and nodes the profiler
maps to the cost model's blocks.
Tiny inputs, batch 2, one thread."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gtn_deploy.bench.subnets import block_of
from gtn_deploy.cost.analytic import network_cost
from gtn_deploy.spaces import FAMILIES, create_space
from gtn_deploy.supernet import build_student
from family_helpers import archs, image, supernet

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # exporter internals
CASES = [(family, task) for family in sorted(FAMILIES) for task in ("fashion-mnist", "cifar10")]


@pytest.mark.parametrize("family, task", CASES)
def test_extracted_student_matchessupernet(family, task):
    net = supernet(family, task)
    space = net.space
    for arch in archs(space, 11):
        net.set_active(arch)
        student = net.extract(arch).eval()
        assert not any("Dynamic" in type(m).__name__ or "Sliced" in type(m).__name__
                       for m in student.modules())
        x = image(space, arch)
        with torch.no_grad():
            want, got = net(x), student(x)
        assert got.shape == (2, space.task.num_classes)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), arch.summary()
    net.set_active(space.max_arch())


@pytest.mark.parametrize("family, task", CASES)
def test_params_and_flops_agree_with_modules(family, task):
    space = create_space(family, task)
    for arch in archs(space, 21):
        student = build_student(space, arch).eval()
        cost = network_cost(space, arch)
        assert cost.params == sum(p.numel() for p in student.parameters()), arch.summary()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            student(image(space, arch, batch=1))
        measured = counter.get_total_flops()
        assert abs(cost.flops - measured) <= 0.02 * measured, \
            f"{space.name} {arch.summary()}: cost model {cost.flops}, torch {measured}"


@pytest.mark.parametrize("family, task", CASES)
def test_layer_names_are_module_paths_with_their_params(family, task):
    """The cost model's layers are the student's modules (per-layer reports and the
    profiler's node-to-block mapping rest on it)."""
    space = create_space(family, task)
    for arch in archs(space, 9, n=1):
        modules = dict(build_student(space, arch).named_modules())
        for layer in network_cost(space, arch).layers:
            if layer.op_class == "elementwise":  # residual adds are not modules
                continue
            assert layer.name in modules, f"{layer.name} is not a module of the student"
            params = sum(p.numel() for p in modules[layer.name].parameters())
            assert params == layer.params, f"{layer.name}: module {params}, cost {layer.params}"


def _export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    # As tests/test_supernet_onnx.py: the TorchScript exporter, parity checked below.
    buf = io.BytesIO()
    torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_student_exports_and_matches_onnxruntime(family):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = supernet(family, "fashion-mnist")
    space = net.space
    for arch in archs(space, 31, n=1):
        student = net.extract(arch).eval()
        model = onnx.load_from_string(_export(student, image(space, arch, batch=1)))
        onnx.checker.check_model(model)
        blocks = {block_of(n.name) for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
        assert blocks == {b.shape.name for b in network_cost(space, arch).blocks}  # profiler
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # shared CPU: see tests/conftest.py
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = image(space, arch)
        (got,) = session.run(None, {"input": x.numpy()})
        with torch.no_grad():
            want = student(x).numpy()
        assert got.shape == (2, 10) and np.abs(got - want).max() <= 1e-4, arch.summary()
