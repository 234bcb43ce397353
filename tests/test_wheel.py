"""The light core as a user installs it: a built wheel in a fresh venv without torch, run
from a folder outside the checkout (issue 16). Slow (a venv and a pip install): ~1 min."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "bundle_min"
NETWORK_HINTS = ("No matching distribution", "Could not find a version", "connection",
                 "Temporary failure", "Network is unreachable")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(cmd, cwd, timeout=300):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a copy: building must not leave build/ or *.egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-w", work / "dist", src], cwd=work)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((work / "dist").glob("gtn_deploy-*.whl"))
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", venv], cwd=work).returncode == 0
    py = venv / "bin" / "python"
    pip = _run([py, "-m", "pip", "install", "-q", wheel], cwd=work, timeout=500)
    if pip.returncode and any(h in pip.stderr for h in NETWORK_HINTS):
        pytest.skip(f"no package index reachable for the fresh venv: {pip.stderr[-300:]}")
    assert pip.returncode == 0, pip.stderr[-2000:]
    outside = work / "elsewhere"
    outside.mkdir()
    return venv / "bin", outside


def test_the_wheel_ships_the_profiles_and_not_torch(light_venv):
    bin_dir, outside = light_venv
    probe = _run([bin_dir / "python", "-c",
                  "import importlib.util, gtn_deploy.profiles as p; "
                  "print(p.profiles_dir()); print(importlib.util.find_spec('torch'))"], outside)
    assert probe.returncode == 0, probe.stderr
    folder, torch_spec = probe.stdout.split()
    assert "site-packages/gtn_deploy/device_profiles" in folder and torch_spec == "None"


@pytest.mark.parametrize("args, expect", [
    (["profiles", "list"], "jetson-orin-nano"),
    (["profiles", "show", "rpi4"], "raspberry-pi-4"),
    (["plan", "--device", "jetson-orin-nano", "--top-k", "2"], "jetson-orin-nano"),
    (["bundle", "verify", FIXTURE], "OK"),
    (["bundle", "info", FIXTURE], "bundle_min"),
    (["bench", FIXTURE, "--iters", "30", "--warmup", "3"], "p50"),
])
def test_light_commands_run_outside_the_checkout(light_venv, args, expect):
    bin_dir, outside = light_venv
    out = _run([bin_dir / "gtnd", *args], outside)
    assert out.returncode == 0, out.stdout + out.stderr
    assert expect in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
