"""Bundles end to end: export, manifest, verify (every byte), runner, CLI, atomicity."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from test_export_helpers import trained_student_dir
from typer.testing import CliRunner

from gtn_deploy.cli import bundle as bundle_cmd
from gtn_deploy.cli import export as export_cmd
from gtn_deploy.data.sources import load_fashion_mnist
from gtn_deploy.errors import ExportError
from gtn_deploy.export import bundle as bundle_mod
from gtn_deploy.export.bundle import ExportOptions, export_student
from gtn_deploy.export.documents import recommend_precision
from gtn_deploy.io_utils import sha256_file
from gtn_deploy.manifest import load_manifest, verify_files
from gtn_deploy.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_FILES = {"model.onnx", "model.int8.onnx", "weights.safetensors", "student.json",
                  "build_engine.sh", "run_onnx.py", "run_trt.py", "bundle_io.py", "labels.txt",
                  "README.md"}
runner = CliRunner()


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return trained_student_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, student):
    out = tmp_path_factory.mktemp("bundles")
    options = ExportOptions(int8=True, presets=("performance",), eval_images=500,
                            max_drop_points=5.0, dynamic_batch=True)
    return export_student(student, load_profile("jetson-orin-nano"), out, options)


def _cli(*commands) -> typer.Typer:
    app = typer.Typer()
    app.command("export")(export_cmd.export)
    app.add_typer(bundle_cmd.app, name="bundle")
    return app


def test_layout_and_manifest(bundle, student):
    typed, path = bundle.manifest, bundle.path
    assert {p.name for p in path.iterdir()} == EXPECTED_FILES | {"manifest.json"}
    assert load_manifest(path) == load_manifest(bundle.tarball) == typed
    assert set(typed.files) == EXPECTED_FILES and typed.device_id == "jetson-orin-nano"
    assert typed.family == "mbconv" and typed.arch == typed.doc["arch"]
    m = typed.doc
    assert m["models"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert m["recommended_precision"] == "fp16" and m["recommended_model"] == "model.onnx"
    assert m["input"]["shape"] == ["batch", 1, 28, 28] and m["input"]["dynamic_batch"]
    assert m["input"]["class_labels"][9] == "Ankle boot" and m["input"]["scale"] == 255.0
    met = m["metrics"]
    assert met["eval_images"] == 500 and met["calib_images"] == 300
    assert met["fp32_top1"] > 30 and met["int8_top1"] is not None
    assert met["parity"]["onnxruntime_fp32"]["passed"]
    assert met["parity"]["onnxruntime_fp32"]["images"] >= 256
    assert "onnxruntime_int8" in met["parity"]
    profile = load_profile("jetson-orin-nano")
    assert m["device"] == {"id": "jetson-orin-nano", "profile_sha256": profile.content_hash,
                           "runtime": {"name": "tensorrt", "version": "10.3"},
                           "budget": {"latency_ms": profile.budgets.latency_ms,
                                      "percentile": "p90", "batch_size": 1,
                                      "source": "profile"}}
    assert m["latency_prediction"]["tier"] in (0, 1, 2)
    assert m["latency_prediction"]["precision"] == "fp16"
    assert m["provenance"]["student_sha256"] == sha256_file(student / "weights.safetensors")
    assert m["provenance"]["teacher_sha256"] == "0" * 64
    assert m["versions"]["onnxruntime"] and m["versions"]["nncf"]
    script = (path / "build_engine.sh").read_text()
    assert "--memPoolSize=workspace:256M" in script and "--fp16" in script
    assert "--maxShapes=input:8x1x28x28" in script
    assert os.access(path / "build_engine.sh", os.X_OK)
    assert verify_files(path) == []


def test_cli_verify_and_info(bundle):
    app = _cli()
    for target in (bundle.path, bundle.tarball):
        result = runner.invoke(app, ["bundle", "verify", str(target)])
        assert result.exit_code == 0, result.output
        assert "OK" in result.output and "model.int8.onnx (int8): runs" in result.output
    info = runner.invoke(app, ["bundle", "info", str(bundle.tarball)])
    assert info.exit_code == 0 and "jetson-orin-nano" in info.output
    assert "recommend  fp16" in info.output and "parity" in info.output
    as_json = runner.invoke(app, ["bundle", "info", str(bundle.path), "--json"])
    assert json.loads(as_json.output) == bundle.manifest.doc


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES | {"manifest.json"}))
def test_verify_catches_a_flipped_byte(tmp_path, bundle, name):
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    problems = verify_files(copy)
    assert problems and any(p.startswith(name) or name in p for p in problems), problems
    result = runner.invoke(_cli(), ["bundle", "verify", str(copy)])
    assert result.exit_code != 0 and name in result.output


def test_verify_reports_missing_and_unlisted_files(tmp_path, bundle):
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    (copy / "README.md").unlink()
    (copy / "extra.bin").write_bytes(b"x")
    (copy / "build").mkdir()
    (copy / "build" / "model.fp16.engine").write_bytes(b"engine")  # engines live in build/
    problems = verify_files(copy)
    assert any(p.startswith("README.md: missing") for p in problems)
    assert any(p.startswith("extra.bin: not listed") for p in problems)
    assert not any("build/" in p for p in problems)


def test_runner_needs_only_onnxruntime_and_refuses_pickles(tmp_path, bundle):
    test = load_fashion_mnist(None)["test"]
    np.save(tmp_path / "images.npy", test.images[:4, 0])  # uint8 (N, 28, 28) pixels
    cmd = [sys.executable, "-I", str(bundle.path / "run_onnx.py"), "--runs", "5"]
    out = subprocess.run(cmd + ["--input", str(tmp_path / "images.npy")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("image ") == 4 and "p50" in out.stdout
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = subprocess.run(cmd + ["--input", str(tmp_path / "evil.npy")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode != 0 and "allow_pickle" in bad.stderr


@pytest.fixture(scope="module")
def fixed_bundle(tmp_path_factory, student):
    """The pipeline's default: fixed batch 1, fp32 only."""
    out = tmp_path_factory.mktemp("fixed")
    return export_student(student, load_profile("x86-laptop"), out,
                          ExportOptions(int8=False, eval_images=300))


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
def test_runner_classifies_every_image_and_names_its_provider(kind, tmp_path, bundle,
                                                              fixed_bundle):
    path = (fixed_bundle if kind == "fixed" else bundle).path
    assert load_manifest(path).input["dynamic_batch"] is (kind == "dynamic")
    test = load_fashion_mnist(None)["test"]
    np.save(tmp_path / "three.npy", test.images[:3, 0])
    out = subprocess.run([sys.executable, "-I", str(path / "run_onnx.py"), "--runs", "3",
                          "--input", str(tmp_path / "three.npy")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("image ")]
    assert [ln.split(":")[0] for ln in lines] == ["image 0", "image 1", "image 2"]
    assert "3 image(s) classified" in out.stdout and "ExecutionProvider" in out.stdout


def test_dynamic_batch_bundle_benches(bundle):
    from gtn_deploy.bench.run import bench_bundle

    for batch in (1, 4):
        result = bench_bundle(bundle.path, batch_size=batch, iters=5, warmup=1, force=True)
        assert result["batch_size"] == batch and result["timing"]["p50_ms"] > 0


def test_verify_and_info_do_not_import_torch(bundle):
    code = ("import sys; from typer.testing import CliRunner; from gtn_deploy.cli.bundle import app\n"
            f"r = CliRunner().invoke(app, ['verify', {str(bundle.tarball)!r}])\n"
            f"i = CliRunner().invoke(app, ['info', {str(bundle.path)!r}])\n"
            "assert r.exit_code == 0 and i.exit_code == 0, r.output + i.output\n"
            "assert 'torch' not in sys.modules and 'nncf' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_cli_export_and_existing_bundle(tmp_path, student):
    args = ["export", "--student", str(student), "--device", "x86-laptop", "--out",
            str(tmp_path), "--no-int8", "--eval-images", "300", "--name", "cpu"]
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "recommended: fp32" in result.output
    m = load_manifest(tmp_path / "cpu.tar.gz")
    engine_script = (tmp_path / "cpu" / "build_engine.sh").read_text()
    assert m.models["int8"] is None and "no TensorRT engine" in engine_script
    again = runner.invoke(_cli(), args)
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(_cli(), args[:-2] + ["--name", "x", "--opset", "9"])
    assert bad.exit_code == 2 and "--opset 9" in bad.output


def test_failure_inside_the_build_leaves_nothing(tmp_path, student, monkeypatch):
    def half_written_then_boom(model, spec, path, opset):
        Path(path).write_bytes(b"half an onnx file")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(bundle_mod, "export_onnx", half_written_then_boom)
    with pytest.raises(RuntimeError, match="mid-build"):
        export_student(student, load_profile("jetson-orin-nano"), tmp_path,
                       ExportOptions(int8=False, eval_images=300))
    assert list(tmp_path.iterdir()) == []


def test_sigkill_mid_export_leaves_no_bundle(tmp_path, student):
    code = ("from gtn_deploy.export.bundle import export_student, ExportOptions\n"
            "from gtn_deploy.profiles import load_profile\n"
            f"export_student({str(student)!r}, load_profile('x86-laptop'), {str(tmp_path)!r}, "
            "ExportOptions(int8=False, name='k'))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".k.") for p in tmp_path.iterdir()):
        time.sleep(0.02)
    time.sleep(0.05)  # inside the build: the ONNX export and parity gate run now
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    names = {p.name for p in tmp_path.iterdir()}
    assert "k" not in names and "k.tar.gz" not in names  # only hidden temporaries remain
    if (tmp_path / "k").exists():  # pragma: no cover - only if the kill came too late
        assert verify_files(tmp_path / "k") == []


def test_recommendation_follows_profile_and_measurement():
    laptop, agx = load_profile("x86-laptop"), load_profile("jetson-agx-orin")
    slow_int8 = {"fp32": {"p50_ms": 0.1}, "int8": {"p50_ms": 0.3}}
    assert recommend_precision(laptop, True, slow_int8)[0] == "fp32"
    assert recommend_precision(agx, True, slow_int8)[0] == "int8"  # TensorRT: the profile
    precision, why = recommend_precision(agx, False, None)
    assert precision == "fp16" and "gate" in why
    assert recommend_precision(load_profile("jetson-nano"), False, None)[0] == "fp16"


def test_refuses_a_folder_that_is_not_a_student(tmp_path):
    with pytest.raises(Exception) as err:
        export_student(tmp_path, load_profile("x86-laptop"), tmp_path / "out")
    assert "student.json" in str(err.value) or "not found" in str(err.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert issubclass(ExportError, Exception)
