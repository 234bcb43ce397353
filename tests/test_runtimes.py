"""Runtimes behind one interface: the registry and the profile's choice; onnxruntime and
OpenVINO give the same logits; gtnd bench and gtnd calibrate with OpenVINO; a missing
OpenVINO is one error line; the layering of runtimes/ and bench/."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cli_helpers import assert_one_line_error
from gtn_deploy.cli.main import app
from gtn_deploy.errors import MissingDependencyError, UsageError
from gtn_deploy.profile_schema import ProfileSpec, Runtime as RuntimeSpec
from gtn_deploy.profiles import DeviceProfile, load_profile
from gtn_deploy.runtimes import RUNTIMES, runtime_for

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "tests" / "fixtures" / "bundle_min"
RUNNER = CliRunner()
HAS_OV = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OV, reason="openvino is not installed "
                                                       "(pip install 'gtn-deploy[openvino]')")


def _with_runtime(ref: str, **runtime) -> DeviceProfile:
    """A shipped profile with another runtime entry."""
    data = load_profile(ref).spec.model_dump(mode="json")
    data["runtime"] = {"version": "1", "source": "policy: test", **runtime}
    return DeviceProfile(ProfileSpec.model_validate(data), Path("<test>"), "test")


def _inputs(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 1, 1, 28, 28)).astype(np.float32)


# -- the registry and the one chooser ---------------------------------------------------------

def test_registry_holds_every_runtime_a_profile_can_name():
    assert set(RUNTIMES) == set(typing.get_args(RuntimeSpec.model_fields["name"].annotation))
    for name, rt in RUNTIMES.items():
        assert rt.name == name and rt.precisions and rt.calibration_precisions
        assert set(rt.calibration_precisions) <= set(rt.precisions)
    from gtn_deploy.bench.runners import BACKENDS

    assert BACKENDS == (*RUNTIMES, "torch")


@pytest.mark.parametrize("ref, name", [("x86-laptop", "onnxruntime"), ("local", "onnxruntime"),
                                       ("raspberry-pi-5", "onnxruntime"),
                                       ("jetson-orin-nano", "tensorrt"),
                                       ("nvidia-t4", "tensorrt")])
def test_the_profile_chooses_its_runtime(ref, name):
    profile = load_profile(ref)
    assert runtime_for(profile) is RUNTIMES[name] is runtime_for(profile.runtime)
    assert runtime_for(name) is RUNTIMES[name]


def test_an_openvino_profile_chooses_openvino_on_the_cpu():
    profile = _with_runtime("x86-laptop", name="openvino")
    rt = runtime_for(profile)
    assert rt.name == "openvino" and rt.default_provider(profile) == "CPU"
    assert "tier 1 only" in rt.tier2_unavailable("CPU")
    assert RUNTIMES["onnxruntime"].tier2_unavailable("CPUExecutionProvider") is None


def test_unknown_runtime_is_one_line():
    with pytest.raises(UsageError, match="unknown runtime 'tflite'; valid: onnxruntime, "
                                         "tensorrt, openvino"):
        runtime_for("tflite")
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--backend", "tflite"])
    assert_one_line_error(res, "unknown backend 'tflite'", "openvino")


def test_tensorrt_builds_from_files():
    with pytest.raises(UsageError, match="from ONNX files, not bytes"):
        RUNTIMES["tensorrt"].session(b"onnx bytes", 1, "fp32")


# -- one model, two runtimes ------------------------------------------------------------------

@needs_openvino
def test_onnxruntime_and_openvino_give_the_same_logits():
    """The committed student (fp32), from the file and from its bytes."""
    model = BUNDLE / "model.onnx"
    ort = RUNTIMES["onnxruntime"].session(model, 1, "fp32")
    ov = RUNTIMES["openvino"].session(model.read_bytes(), 1, "fp32")
    for x in _inputs():
        a, b = np.asarray(ort.run(x)), np.asarray(ov.run(x))
        assert a.shape == b.shape == (1, 10)
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    assert ov.info["runtime"] == "openvino" and ov.info["runtime_version"]
    assert ov.info["inference_num_threads"] == 1 and ov.info["performance_hint"] == "LATENCY"
    assert ov.info["inference_precision"] == "f32"
    assert ort.info["runtime_version"] and ort.info["provider"] == "CPUExecutionProvider"


@needs_openvino
def test_bench_with_openvino(tmp_path):
    out = tmp_path / "r.json"
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--backend", "openvino", "--threads", "1",
                              "--iters", "20", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"bundle_min | openvino {RUNTIMES['openvino'].version()} fp32" in res.output
    doc = json.loads(out.read_text())
    assert doc["backend"] == "openvino" and doc["precision"] == "fp32"
    assert doc["runtime_version"] == RUNTIMES["openvino"].version()
    assert doc["runner"]["provider"] == "CPU" and doc["timing"]["iters"] == 20
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--backend", "openvino", "--precision",
                              "fp16"])
    assert_one_line_error(res, "backend openvino runs fp32, int8, not 'fp16'")


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory) -> Path:
    """The committed student (its weights and student.json) with NNCF's int8 Q/DQ model."""
    pytest.importorskip("torch")
    pytest.importorskip("nncf")
    from gtn_deploy.export.bundle import ExportOptions, export_student

    opts = ExportOptions(int8=True, allow_accuracy_drop=True, presets=("performance",),
                         eval_images=256, parity_images=256, tarball=False, name="tiny8")
    return export_student(BUNDLE, load_profile("local"), tmp_path_factory.mktemp("int8"), opts,
                          progress=False).path


@needs_openvino
def test_openvino_runs_the_int8_qdq_model(int8_bundle, tmp_path):
    """NNCF's Q/DQ model runs on OpenVINO as it is, close to onnxruntime's int8 logits."""
    model = int8_bundle / "model.int8.onnx"
    ort = RUNTIMES["onnxruntime"].session(model, 1, "int8")
    ov = RUNTIMES["openvino"].session(model, 1, "int8")
    a = np.concatenate([ort.run(x) for x in _inputs(32)])
    b = np.concatenate([ov.run(x) for x in _inputs(32)])
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.9
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()
    out = tmp_path / "r.json"
    res = RUNNER.invoke(app, ["bench", str(int8_bundle), "--backend", "openvino", "--precision",
                              "int8", "--threads", "1", "--iters", "20", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert (doc["backend"], doc["precision"]) == ("openvino", "int8")


# -- without OpenVINO -------------------------------------------------------------------------

def test_missing_openvino_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails, find_spec: None
    with pytest.raises(MissingDependencyError, match=r"gtn-deploy\[openvino\]"):
        RUNTIMES["openvino"].session(BUNDLE / "model.onnx", 1, "fp32")
    res = RUNNER.invoke(app, ["bench", str(BUNDLE), "--backend", "openvino"])
    assert_one_line_error(res, "runtime 'openvino' is not installed",
                          "pip install 'gtn-deploy[openvino]'")
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--runtime", "openvino",
                              "--out", str(tmp_path / "o.yaml")])
    assert_one_line_error(res, "OpenVINO is not installed here",
                          "pip install 'gtn-deploy[openvino]'")
    profile = _with_runtime("x86-laptop", name="openvino")  # its own runtime: say the override
    from gtn_deploy.bench.calibration_runtime import calibration_runner

    with pytest.raises(MissingDependencyError,
                       match="runs OpenVINO, which is not installed.*--runtime onnxruntime-cpu"):
        calibration_runner(profile)
    assert list(tmp_path.iterdir()) == []


# -- calibration ------------------------------------------------------------------------------

@needs_openvino
def test_calibrate_with_openvino_fits_tier1(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "ov.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--runtime", "openvino",
                              "--samples", "6", "--holdout", "3", "--rounds", "2", "--iters",
                              "10", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tier 2 not fitted" in res.output and "with OpenVINO" in res.output
    assert "warning: deviation: measured with OpenVINO on the CPU" in res.output
    c = yaml.safe_load(out.read_text())["calibration"]
    fp = c["fingerprint"]
    assert (fp["runtime"], fp["provider"], fp["precision"], fp["threads"]) == \
        ("openvino", "CPU", "fp32", 1)
    assert fp["runtime_version"] == RUNTIMES["openvino"].version()
    assert c["tier"] == 1 and c["tier2"] is None and c["runtime"]["name"] == "openvino"
    assert all(v["n"] == 3 for v in c["validation"]["held_out"].values())
    plan = RUNNER.invoke(app, ["plan", "--device", str(out), "--task", "fashion-mnist",
                               "--top-k", "1"])
    assert plan.exit_code == 0, plan.output
    assert "calibration measured with OpenVINO on the CPU" in plan.output


def test_an_openvino_profile_calibrates_with_openvino(monkeypatch):
    from gtn_deploy.bench import calibration_runtime as cr

    monkeypatch.setattr(cr, "_checked", lambda runner, profile: runner)
    runner = cr.calibration_runner(_with_runtime("x86-laptop", name="openvino"))
    assert (runner.runtime, runner.provider, runner.precision, runner.deviation) == \
        ("openvino", "CPU", "fp32", None)
    assert runner.threaded and "tier 1 only" in runner.tier2_unavailable
    over = cr.calibration_runner(load_profile("x86-laptop"), override="openvino")
    assert "not the profile's onnxruntime 1.17+ (CPUExecutionProvider)" in over.deviation
    with pytest.raises(UsageError, match="--runtime openvino; --host measures with onnxruntime"):
        cr.calibration_runner(load_profile("x86-laptop"), override="openvino", here=False)


# -- layering ---------------------------------------------------------------------------------

def _imports(folder: Path) -> dict[str, set[str]]:
    """gtn_deploy modules each file of ``folder`` imports (inside functions too)."""
    out = {}
    for path in sorted(folder.glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[path.name] = {n for n in names if n.startswith("gtn_deploy")}
    return out


def test_runtimes_import_only_below_them_and_bench_not_export():
    allowed = ("gtn_deploy.runtimes", "gtn_deploy.errors", "gtn_deploy.machine",
               "gtn_deploy.io_utils", "gtn_deploy.constants", "gtn_deploy.arch",
               "gtn_deploy.profiles", "gtn_deploy.manifest")  # manifest: a leaf, json only
    for file, names in _imports(ROOT / "gtn_deploy" / "runtimes").items():
        assert all(n.startswith(allowed) for n in names), (file, names)
    for file, names in _imports(ROOT / "gtn_deploy" / "bench").items():
        assert not any(n.startswith("gtn_deploy.export") for n in names), (file, names)
    probe = _imports(ROOT / "gtn_deploy")["local_probe.py"]
    assert not any(n.startswith("gtn_deploy.bench.runners") for n in probe)


def test_calibration_subnets_export_as_bundles_do(tmp_path):
    """bench.subnets exports without export.onnx (layering): the same graph all the same."""
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import torch

    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.bench.subnets import SUBNET_OPSET, export_subnet
    from gtn_deploy.export.onnx import DEFAULT_OPSET, InputSpec, export_onnx
    from gtn_deploy.supernet.families import build_student

    assert SUBNET_OPSET == DEFAULT_OPSET
    space = get_space("fashion-mnist")
    arch = space.min_arch()
    ours = onnx.load(export_subnet(space, arch, tmp_path / "a.onnx", seed=3))
    torch.manual_seed(3)
    export_onnx(build_student(space, arch).eval(), InputSpec(1, 28, 28), tmp_path / "b.onnx",
                simplify=False)
    theirs = onnx.load(tmp_path / "b.onnx")
    assert [(n.op_type, n.name) for n in ours.graph.node] == \
        [(n.op_type, n.name) for n in theirs.graph.node]
    assert [i.name for i in ours.graph.input] == [i.name for i in theirs.graph.input]
    assert ours.opset_import[0].version == theirs.opset_import[0].version == DEFAULT_OPSET
