"""build_engine.sh per TensorRT generation (8.x, 10.x, 11.x), checked on CPU.

The scripts are run for real against a stand-in ``trtexec`` executable that prints the
version banner the real one prints and records its arguments: what is under test is the
script (version check, flags, paths), not TensorRT.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gtn_deploy.errors import ExportError, UsageError
from gtn_deploy.export.tensorrt import build_script
from gtn_deploy.runtimes.tensorrt import generation, parse_version, plan_engine

SHAPE = (1, 1, 28, 28)
BASH = shutil.which("bash")


def _plan(version, precision="fp16", dynamic=False, int8_file="model.int8.onnx", opset=17):
    return plan_engine(version, precision, "input", SHAPE, dynamic_batch=dynamic, max_batch=16,
                       int8_file=int8_file, opset=opset)


def _flags(script: str) -> list[str]:
    body = script.split('"$TRTEXEC" \\\n', 1)[1].split("{ set +x;")[0]
    return [line.strip().rstrip("\\").strip() for line in body.splitlines() if line.strip()]


def _bash_n(tmp_path: Path, text: str) -> None:
    path = tmp_path / "build_engine.sh"
    path.write_text(text)
    proc = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("version, gen", [("8.2.1", 8), ("8.5.2", 8), ("10.3", 10),
                                          ("10.3.0.30", 10), ("11.0", 11)])
def test_generation(version, gen):
    assert generation(version) == gen
    assert parse_version(version)[0] == int(version.split(".")[0])


def test_unknown_versions_and_precisions():
    with pytest.raises(UsageError, match="7.1"):
        generation("7.1")
    with pytest.raises(UsageError):
        parse_version("latest")
    with pytest.raises(UsageError, match="bf16"):
        _plan("10.3", "bf16")
    with pytest.raises(ExportError, match="Q/DQ"):
        _plan("10.3", "int8", int8_file=None)


def test_trt8_weak_typing_flags(tmp_path):
    fp16 = build_script(_plan("8.5.2", "fp16"), "jetson-xavier-nx")
    flags = _flags(fp16)
    assert "--workspace=256" in flags and "--fp16" in flags
    assert '--onnx="$ONNX"' in flags and '--saveEngine="$ENGINE"' in flags
    assert '--timingCacheFile="$TIMING_CACHE"' in flags
    assert not any(f.startswith(("--memPoolSize", "--stronglyTyped", "--int8", "--minShapes"))
                   for f in flags)
    int8 = build_script(_plan("8.5.2", "int8"), "jetson-xavier-nx")
    assert {"--int8", "--fp16"} <= set(_flags(int8))
    assert 'ONNX="$HERE/model.int8.onnx"' in int8  # INT8 only from the Q/DQ model
    for text in (fp16, int8):
        _bash_n(tmp_path, text)


def test_trt10_mempool_and_dynamic_shapes(tmp_path):
    script = build_script(_plan("10.3", "fp16", dynamic=True), "jetson-orin-nano")
    flags = _flags(script)
    assert "--memPoolSize=workspace:256M" in flags and "--fp16" in flags
    assert not any(f.startswith("--workspace") for f in flags)
    assert "--minShapes=input:1x1x28x28" in flags
    assert "--optShapes=input:1x1x28x28" in flags
    assert "--maxShapes=input:16x1x28x28" in flags
    assert "EXPECTED_TRT=10.3" in script
    _bash_n(tmp_path, script)
    fixed = _flags(build_script(_plan("10.3", "fp32"), "jetson-orin-nano"))
    assert not any(f.startswith(("--minShapes", "--fp16", "--int8")) for f in fixed)


def test_trt11_strongly_typed_without_precision_flags(tmp_path):
    for precision in ("fp32", "fp16", "int8"):
        script = build_script(_plan("11.0", precision), "future-gpu")
        flags = _flags(script)
        assert "--stronglyTyped" in flags
        assert "--memPoolSize=workspace:256M" in flags
        assert not any(f in ("--fp16", "--int8", "--best") for f in flags)
        assert ("model.int8.onnx" in script) == (precision == "int8")
        assert ("modelopt.onnx.autocast" in script) == (precision == "fp16")
        _bash_n(tmp_path, script)


def test_opset_warning_only_for_old_parsers():
    assert "parses ONNX opsets up to 13" in build_script(_plan("8.2.1"), "jetson-nano")
    assert "opsets up to 13" not in build_script(_plan("8.2.1", opset=13), "jetson-nano")
    assert "opsets up to 13" not in build_script(_plan("10.3"), "jetson-orin-nano")


def _fake_trtexec(tmp_path: Path, banner_version: str) -> Path:
    exe = tmp_path / "trtexec"
    exe.write_text("#!/usr/bin/env bash\n"
                   f'echo "&&&& RUNNING TensorRT.trtexec [TensorRT v{banner_version}] # trtexec $*"\n'
                   'if [ "$1" != "--help" ]; then printf "%s\\n" "$@" > "$ARGS_OUT"; fi\n')
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize("banner, warns", [("100300", False), ("100800", True), ("8201", True)])
def test_script_runs_and_checks_the_installed_version(tmp_path, banner, warns):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes(b"onnx")
    script = bundle / "build_engine.sh"
    script.write_text(build_script(_plan("10.3", "fp16"), "jetson-orin-nano"))
    script.chmod(0o755)
    env = {**os.environ, "TRTEXEC": str(_fake_trtexec(tmp_path, banner)),
           "ARGS_OUT": str(tmp_path / "args.txt")}
    proc = subprocess.run([BASH, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("differs from the profile's TensorRT 10.3" in proc.stderr) == warns
    args = (tmp_path / "args.txt").read_text().splitlines()
    assert f"--onnx={bundle}/model.onnx" in args
    assert f"--saveEngine={bundle}/build/model.fp16.engine" in args
    assert (bundle / "build").is_dir()


def test_script_fails_cleanly_without_trtexec(tmp_path):
    script = tmp_path / "build_engine.sh"
    script.write_text(build_script(_plan("10.3"), "jetson-orin-nano"))
    env = {**os.environ, "TRTEXEC": str(tmp_path / "missing")}
    proc = subprocess.run([BASH, str(script)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "trtexec not found" in proc.stderr
