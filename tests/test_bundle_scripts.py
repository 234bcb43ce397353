"""A bundle's scripts on their own (issue 16): run_onnx.py and run_trt.py without gtn_deploy,
labels.txt, the manifest's preprocessing spec, Python 3.8 syntax, and the sweep of the
temporaries a killed export leaves behind.

The scripts run in a subprocess outside the checkout with gtn_deploy and torch made
unimportable. TensorRT cannot be installed here: run_trt.py runs against a stand-in of its
8.x and 10.x Python APIs (tests/fixtures/fake_trt) that runs the ONNX model in onnxruntime,
so everything but the real engine is exercised.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_export_helpers import trained_student_dir

from gtn_deploy.data.sources import load_fashion_mnist
from gtn_deploy.errors import BundleError
from gtn_deploy.export.bundle import STALE_AFTER_S, ExportOptions, export_student, sweep_leftovers
from gtn_deploy.export.data import FASHION_MNIST_LABELS, normalise
from gtn_deploy.manifest import validate_manifest, verify_files
from gtn_deploy.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("run_onnx.py", "run_trt.py", "bundle_io.py")
FAKE_TRT = ROOT / "tests" / "fixtures" / "fake_trt"
FIXTURE = ROOT / "tests" / "fixtures" / "bundle_min"
# Temporaries of our own naming that a killed export leaves (planted before the first export)
PLANTED = {".fixed.ab12cd34.tmp": "dir", ".fixed.tar.gz.zz99yy_8.tmp": "file",
           ".old-run.abcdefgh.tmp": "old dir", ".busy.abcdefgh.tmp": "dir",
           "notes.tmp": "file", ".fixed.tmp": "file"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    student = trained_student_dir(tmp_path_factory)
    out = tmp_path_factory.mktemp("bundles")
    for name, kind in PLANTED.items():
        (out / name).mkdir() if "dir" in kind else (out / name).write_text("x")
        if "dir" in kind:
            (out / name / "model.onnx").write_text("half")
        if kind == "old dir":
            old = time.time() - STALE_AFTER_S - 60
            for p in (out / name / "model.onnx", out / name):
                os.utime(p, (old, old))
    fixed = export_student(student, load_profile("x86-laptop"), out, ExportOptions(
        int8=False, eval_images=300, name="fixed", tarball=False))
    dynamic = export_student(student, load_profile("jetson-orin-nano"), out, ExportOptions(
        int8=False, eval_images=300, name="dynamic", dynamic_batch=True, tarball=False))
    return {"fixed": fixed.path, "dynamic": dynamic.path, "out": out}


@pytest.fixture(scope="module")
def pixels():
    return load_fashion_mnist(None)["test"].images[:3, 0]  # uint8 (3, 28, 28)


def run_script(script, *args, cwd, fake_trt=False, blocked=(), env=None):
    """``python -I script args`` with gtn_deploy, torch and ``blocked`` unimportable."""
    code = ("import runpy, sys\n"
            "for name in sys.argv[1].split(','): sys.modules[name] = None\n"
            "if sys.argv[2]: sys.path.insert(0, sys.argv[2])\n"
            "sys.argv = sys.argv[3:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    names = ",".join(("gtn_deploy", "torch") + tuple(blocked))
    return subprocess.run([sys.executable, "-I", "-c", code, names,
                           str(FAKE_TRT) if fake_trt else "", str(script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def predictions(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("image ")]


@pytest.mark.parametrize("kind", ["fixed", "dynamic"])
def test_run_onnx_names_every_image(kind, bundles, pixels, tmp_path):
    np.save(tmp_path / "two.npy", pixels[:2])
    np.save(tmp_path / "one.npy", pixels[2])  # one (28, 28) image: any number, any files
    out = run_script(bundles[kind] / "run_onnx.py", "--input", "two.npy", "one.npy",
                     "--runs", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = predictions(out.stdout)
    assert [ln.split(":")[0] for ln in lines] == ["image 0", "image 1", "image 2"]
    for line in lines:  # top-5 named from labels.txt
        assert sum(label in line for label in FASHION_MNIST_LABELS) >= 5, line
    assert "3 image(s) classified" in out.stdout and "ExecutionProvider" in out.stdout


@pytest.fixture(scope="module")
def trt_bundles(bundles, tmp_path_factory):
    """Both bundles with run_trt.py and an "engine" (the ONNX model the fake TensorRT runs)."""
    made = {}
    for kind in ("fixed", "dynamic"):
        copy = tmp_path_factory.mktemp("trt") / kind
        shutil.copytree(bundles[kind], copy)
        shutil.copyfile(bundles["dynamic"] / "run_trt.py", copy / "run_trt.py")
        (copy / "build").mkdir()
        precision = "fp16" if kind == "dynamic" else "fp32"
        shutil.copyfile(copy / "model.onnx", copy / "build" / f"model.{precision}.engine")
        made[kind] = copy
    return made


@pytest.mark.parametrize("kind, api, memory", [("fixed", "10", "cuda-python"),
                                               ("dynamic", "10", "cuda-python"),
                                               ("fixed", "8", "pycuda"),
                                               ("dynamic", "8", "cuda-python")])
def test_run_trt_matches_run_onnx(kind, api, memory, trt_bundles, pixels, tmp_path):
    np.save(tmp_path / "three.npy", pixels)
    ref = run_script(trt_bundles[kind] / "run_onnx.py", "--input", "three.npy", "--runs", "1",
                     cwd=tmp_path)
    out = run_script(trt_bundles[kind] / "run_trt.py", "--input", "three.npy", "--runs", "2",
                     cwd=tmp_path, fake_trt=True, env={"FAKE_TRT_API": api},
                     blocked=("cuda",) if memory == "pycuda" else ())
    assert out.returncode == 0, out.stderr
    assert len(predictions(out.stdout)) == 3 and predictions(out.stdout) == predictions(ref.stdout)
    api_name = "bindings" if api == "8" else "named tensors"
    assert "3 image(s) classified" in out.stdout and f"{api_name}, {memory})" in out.stdout


@pytest.mark.tensorrt
def test_run_trt_with_real_tensorrt(bundles, pixels, tmp_path):
    """Where TensorRT and a GPU exist: the engine built by the project's API path, run by the
    bundle's run_trt.py, classifies as run_onnx.py does."""
    trt = pytest.importorskip("tensorrt")
    if importlib.util.find_spec("cuda") is None and importlib.util.find_spec("pycuda") is None:
        pytest.skip("run_trt.py needs cuda-python or pycuda beside tensorrt")
    from gtn_deploy.runtimes.tensorrt import build_engine, plan_engine

    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["dynamic"], bundle)
    shutil.copyfile(bundles["dynamic"] / "run_trt.py", bundle / "run_trt.py")
    manifest = json.loads((bundle / "manifest.json").read_text())
    shape = tuple(manifest["input"]["shape"])
    plan = plan_engine(trt.__version__, "fp32", manifest["input"]["name"], (8, *shape[1:]),
                       dynamic_batch=True, max_batch=8)
    (bundle / "build").mkdir()
    engine = build_engine(bundle / "model.onnx", plan, bundle / "build" / "model.fp32.engine",
                          tmp_path / "timing.cache")
    np.save(tmp_path / "three.npy", pixels)
    ref = run_script(bundle / "run_onnx.py", "--input", "three.npy", "--runs", "1",
                     cwd=tmp_path)
    out = run_script(bundle / "run_trt.py", "--engine", engine, "--input", "three.npy",
                     "--runs", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(predictions(out.stdout)) == 3 and predictions(out.stdout) == predictions(ref.stdout)


@pytest.mark.parametrize("blocked, fake, expect", [
    (("tensorrt",), False, "error: tensorrt does not import"),
    (("cuda", "pycuda"), True, "error: run_trt.py needs cuda-python or pycuda"),
])
def test_run_trt_missing_runtime_is_one_line(blocked, fake, expect, trt_bundles, tmp_path):
    out = run_script(trt_bundles["dynamic"] / "run_trt.py", "--runs", "1", cwd=tmp_path,
                     fake_trt=fake, blocked=blocked)
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith(expect) and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_run_trt_without_an_engine_or_tensorrt_still_parses(bundles, tmp_path):
    script = bundles["dynamic"] / "run_trt.py"
    assert run_script(script, "--help", cwd=tmp_path, blocked=("tensorrt",)).returncode == 0
    out = run_script(script, cwd=tmp_path, fake_trt=True)
    assert out.returncode != 0 and "./build_engine.sh" in out.stderr
    assert out.stderr.startswith("error: no engine at ") and "model.fp16.engine" in out.stderr
    (tmp_path / "junk.engine").write_bytes(b"not an engine")
    junk = run_script(script, "--engine", "junk.engine", cwd=tmp_path, fake_trt=True)
    assert junk.returncode != 0 and "cannot load junk.engine" in junk.stderr
    np.save(tmp_path / "bad.npy", np.full((1, 28, 28), 300, np.int32))
    bad = run_script(script, "--input", "bad.npy", cwd=tmp_path, fake_trt=True)
    assert bad.returncode != 0 and "0..255" in bad.stderr and "Traceback" not in bad.stderr


def test_run_onnx_takes_normalised_floats_of_the_model_shape(bundles, pixels, tmp_path):
    prep = json.loads((bundles["fixed"] / "manifest.json").read_text())["preprocessing"]
    np.save(tmp_path / "x.npy", normalise(pixels[:, None], prep["mean"], prep["std"]))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 1, 32, 32), np.float32))
    out = run_script(bundles["fixed"] / "run_onnx.py", "--input", "x.npy", "--runs", "1",
                     cwd=tmp_path)
    assert out.returncode == 0 and len(predictions(out.stdout)) == 3, out.stderr
    wrong = run_script(bundles["fixed"] / "run_onnx.py", "--input", "wrong.npy", cwd=tmp_path)
    assert wrong.returncode != 0 and wrong.stderr.startswith("error: wrong.npy: float input")


def test_labels_and_preprocessing_spec(bundles):
    for kind in ("fixed", "dynamic"):
        path = bundles[kind]
        m = json.loads((path / "manifest.json").read_text())
        labels = (path / "labels.txt").read_text().splitlines()
        assert labels == list(FASHION_MNIST_LABELS) == m["input"]["class_labels"]
        prep = m["preprocessing"]
        assert prep["color"] == "grayscale" and prep["channel_order"] == "L"
        assert prep["mean"] == m["input"]["mean"] and prep["std"] == m["input"]["std"]
        assert prep["crop"]["height"] == prep["crop"]["width"] == 28
        assert (prep["layout"], prep["dtype"], prep["value_range"]) == ("NCHW", "float32", [0, 255])
        assert {"labels.txt", "bundle_io.py", "run_onnx.py"} <= set(m["files"])
        assert ("run_trt.py" in m["files"]) is (kind == "dynamic")  # TensorRT bundles only
        assert ("run_trt.py" in (path / "README.md").read_text()) is (kind == "dynamic")
        assert verify_files(path) == []


@pytest.mark.parametrize("field, value, message", [
    ("color", "bgr", "color/channel_order"),
    ("mean", [0.1, 0.2], "mean needs 1 numbers"),
    ("std", [0.0], "must be > 0"),
    ("crop", {"height": 32, "width": 32, "position": "center"}, "do not match input shape"),
    ("resize", {"shorter_side": 28, "interpolation": "nearest"}, "bilinear"),
])
def test_manifest_rejects_a_broken_preprocessing_spec(bundles, field, value, message):
    m = json.loads((bundles["fixed"] / "manifest.json").read_text())
    m["preprocessing"][field] = value
    with pytest.raises(BundleError, match=message):
        validate_manifest(m)


def _bundle_io(folder: Path):
    spec = importlib.util.spec_from_file_location("bundle_io_under_test", folder / "bundle_io.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preprocessing_matches_training_and_handles_other_images(bundles, pixels):
    bio = _bundle_io(bundles["fixed"])
    prep = json.loads((bundles["fixed"] / "manifest.json").read_text())["preprocessing"]
    x = bio.preprocess(pixels[:, :, :, None], prep)
    np.testing.assert_allclose(x, normalise(pixels[:, None], prep["mean"], prep["std"]),
                               atol=1e-6)
    wide = np.zeros((1, 28, 40, 3), np.uint8)  # colour, wider: grey, then the centre crop
    wide[:, :, 6:34] = pixels[0][:, :, None]
    np.testing.assert_allclose(bio.preprocess(wide, prep), x[:1], atol=1e-5)
    big = np.full((1, 56, 56, 1), 200, np.uint8)  # larger: resized down to 28 x 28
    assert bio.preprocess(big, prep).shape == (1, 1, 28, 28)


def check_python_3_8(files) -> None:
    """Every file parses as 3.8 syntax; vermin (dev extra) also checks the library calls."""
    for file in files:
        ast.parse(file.read_text(), str(file), feature_version=(3, 8))
    pytest.importorskip("vermin", reason="vermin is a dev extra: pip install -e .[dev]")
    out = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
                          "-t=3.8-", "--violations", "--eval-annotations", "--no-tips",
                          *map(str, files)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_bundle_scripts_run_on_python_3_8(bundles):
    check_python_3_8([bundles["dynamic"] / name for name in SCRIPTS])


def test_calibration_device_script_runs_on_python_3_8():
    """What gtnd calibrate --host sends to the device: time_subnets.py and bundle_io.py,
    and device_check.py, which bench --host sends too."""
    check_python_3_8([ROOT / "gtn_deploy" / "bench" / "time_subnets.py",
                      ROOT / "gtn_deploy" / "bench" / "device_check.py",
                      ROOT / "gtn_deploy" / "export" / "bundle_io.py"])


def test_export_sweeps_what_a_killed_export_left(bundles):
    names = {p.name for p in bundles["out"].iterdir()}
    assert ".fixed.ab12cd34.tmp" not in names and ".fixed.tar.gz.zz99yy_8.tmp" not in names
    assert ".old-run.abcdefgh.tmp" not in names  # another name's, untouched for an hour
    assert {".busy.abcdefgh.tmp", "notes.tmp", ".fixed.tmp"} <= names  # live or not ours


def test_sweep_leftovers_unit(tmp_path):
    (tmp_path / ".b.x1y2z3w4.tmp").mkdir()
    (tmp_path / ".other.x1y2z3w4.tmp").write_text("")
    (tmp_path / "b").mkdir()  # the finished bundle is never touched
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / ".link.x1y2z3w4.tmp").symlink_to(target)
    swept = sweep_leftovers(tmp_path, "b")
    assert [p.name for p in swept] == [".b.x1y2z3w4.tmp"]
    later = sweep_leftovers(tmp_path, "b", now=time.time() + STALE_AFTER_S + 1)
    assert [p.name for p in later] == [".other.x1y2z3w4.tmp"] and target.is_dir()
    assert sweep_leftovers(tmp_path / "missing", "b") == []


def test_committed_fixture_bundle_is_current():
    """tests/fixtures/bundle_min (the wheel test's bundle) has today's layout and verifies;
    regenerate it with tests/fixtures/make_bundle.py when the layout changes."""
    assert verify_files(FIXTURE) == []
    m = json.loads((FIXTURE / "manifest.json").read_text())
    assert {"labels.txt", "bundle_io.py", "run_onnx.py"} <= set(m["files"])
    assert "preprocessing" in m
    for name in ("run_onnx.py", "bundle_io.py"):
        shipped = (ROOT / "gtn_deploy" / "export" / name).read_bytes()
        assert (FIXTURE / name).read_bytes() == shipped, f"{name} is stale: regenerate"
