"""Calibration measures with the profile's runtime; an untrusted fit is written but marked.

Most tests replace the measurement with synthetic latencies (no torch export, no speed of
this machine involved); the TensorRT test measures for real wherever tensorrt imports."""

from __future__ import annotations

import dataclasses
import importlib.util
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli_helpers import assert_one_line_error
from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.bench import calibration
from gtn_deploy.bench import calibration_runtime as cr
from gtn_deploy.bench.subnets import SubnetTiming
from gtn_deploy.cli.main import app
from gtn_deploy.cost import calibrate as cal
from gtn_deploy.fingerprint import current_fingerprint, fingerprint_matches
from gtn_deploy.cost.analytic import network_layers
from gtn_deploy.cost.tier1 import tier1_block_ms
from gtn_deploy.errors import MissingDependencyError, UsageError
from gtn_deploy.profile_schema import ProfileSpec
from gtn_deploy.profiles import DeviceProfile, load_profile

RUNNER = CliRunner()
SPACE = get_space("fashion-mnist")
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
TRUTH = cal.Tier1((("conv", 2e-11), ("pointwise", 3e-11), ("depthwise", 9e-11),
                   ("se", 5e-11), ("linear", 4e-11)), 1e-10, 2e-6, 3e-5, 4)


def _variant(ref: str, **changes) -> DeviceProfile:
    """A shipped profile with top-level fields replaced (e.g. another runtime)."""
    data = load_profile(ref).spec.model_dump(mode="json")
    data.update(changes)
    return DeviceProfile(ProfileSpec.model_validate(data), Path("<test>"), "test")


def _fake_measure(noise: float, seen: list | None = None):
    """measure_subnets with synthetic latencies: tier-1 truth times lognormal noise."""
    def measure(space, archs, threads, plan, profile_runs, profiled=None, seed=0,
                make_runner=None, **_):
        if seen is not None:
            seen.append({"profile_runs": profile_runs, "make_runner": make_runner})
        rng = random.Random(seed)
        timings = []
        for arch in archs:
            ms = TRUTH.seconds(network_layers(space, arch)) * 1e3 * rng.lognormvariate(0, noise)
            blocks = {k: v * 1e3 * rng.lognormvariate(0, noise)
                      for k, v in tier1_block_ms(space, arch, TRUTH).items()}
            timings.append(SubnetTiming(arch, ms, [ms, ms * 1.01], blocks, spread=0.01))
        info = {"seconds": 1.0, "export_s": 0.1, "timing_s": 0.9, "rounds_min": 2,
                "rounds_max": 2, "stop": "converged", "plan": {"spread_bound": 0.03}}
        return timings, info

    return measure


# -- which runner ---------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["local", "x86-laptop", "raspberry-pi-5"])
def test_cpu_profiles_calibrate_with_onnxruntime_cpu(ref):
    runner = cr.calibration_runner(load_profile(ref))
    assert (runner.runtime, runner.provider, runner.precision) == \
        ("onnxruntime", "CPUExecutionProvider", "fp32")
    assert runner.deviation is None and runner.tier2_unavailable is None


def test_gpu_onnxruntime_profile_uses_cuda(monkeypatch):
    profile = _variant("nvidia-t4", runtime={"name": "onnxruntime", "version": "1.17",
                                             "source": "policy: test"})
    monkeypatch.setattr(cr, "_checked", lambda runner, profile: runner)
    runner = cr.calibration_runner(profile)
    assert runner.provider == "CUDAExecutionProvider" and runner.precision == "fp32"
    assert "kernel launches" in runner.tier2_unavailable  # tier 1 only on a GPU provider
    assert "int8" in runner.notes[0]  # the profile prefers int8


def test_missing_cuda_provider_is_one_line():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    profile = _variant("nvidia-t4", runtime={"name": "onnxruntime", "version": "1.17",
                                             "source": "policy: test"})
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu.*--runtime onnxruntime-cpu"):
        cr.calibration_runner(profile)


def test_tensorrt_profiles_choose_fp16(monkeypatch):
    monkeypatch.setattr(cr, "_checked", lambda runner, profile: runner)
    orin = cr.calibration_runner(load_profile("jetson-orin-nano"))
    assert (orin.runtime, orin.provider, orin.precision) == ("tensorrt", None, "fp16")
    assert "with TensorRT, calibration fits tier 1 only" in orin.tier2_unavailable
    t4 = cr.calibration_runner(load_profile("nvidia-t4"))  # prefers int8: measured fp16
    assert t4.precision == "fp16" and "int8 is not calibrated" in t4.notes[0]
    assert cr.calibration_runner(load_profile("nvidia-t4"), "fp32").precision == "fp32"


@pytest.mark.parametrize("ref, precision, needle", [
    ("local", "int8", "int8 is not calibrated"),
    ("jetson-orin-nano", "int8", "random weights and no data"),
    ("local", "fp16", "does not run fp16"),
    ("local", "fp64", "unknown precision"),
])
def test_precisions_refused_with_a_reason(ref, precision, needle, monkeypatch):
    monkeypatch.setattr(cr, "_checked", lambda runner, profile: runner)
    with pytest.raises(UsageError, match=needle):
        cr.calibration_runner(load_profile(ref), precision)


def test_override_records_a_deviation():
    runner = cr.calibration_runner(load_profile("jetson-orin-nano"), override="onnxruntime-cpu")
    assert (runner.runtime, runner.provider, runner.precision) == \
        ("onnxruntime", "CPUExecutionProvider", "fp32")
    assert "not the profile's tensorrt 10.3" in runner.deviation
    assert cr.calibration_runner(load_profile("local"), override="onnxruntime-cpu").deviation \
        is None  # the profile's own runtime: nothing deviates
    with pytest.raises(UsageError, match="valid: onnxruntime-cpu"):
        cr.calibration_runner(load_profile("local"), override="tensorrt")


def test_tensorrt_profile_without_tensorrt_is_one_error_line():
    if HAS_TRT:
        pytest.skip("tensorrt imports here")
    result = RUNNER.invoke(app, ["calibrate", "--device", "jetson-orin-nano", "--force",
                                 "--samples", "4"])
    assert_one_line_error(result, "runs TensorRT 10.3", "tensorrt", "pip install tensorrt",
                          "--runtime onnxruntime-cpu")


def test_int8_is_refused_in_one_line():
    result = RUNNER.invoke(app, ["calibrate", "--device", "local", "--precision", "int8"])
    assert_one_line_error(result, "int8 is not calibrated")


# -- a tier-1-only runtime, trust ------------------------------------------------------------

def test_tensorrt_runner_fits_tier1_only(monkeypatch):
    seen = []
    monkeypatch.setattr(calibration, "measure_subnets", _fake_measure(0.02, seen))
    runner = cr.CalibrationRunner("tensorrt", None, "fp16")
    c = calibration.run_calibration(load_profile("jetson-orin-nano"), SPACE, 8, 6, runner=runner)
    assert seen[0]["profile_runs"] == 0  # no node profiler
    assert c["tier"] == 1 and c["tier2"] is None and set(c["expected_error"]) == {"0", "1"}
    assert c["fingerprint"]["runtime"] == "tensorrt" and c["fingerprint"]["precision"] == "fp16"
    assert c["fingerprint"]["threads"] is None and c["runtime"]["tier2"] is False
    assert c["trusted"] is True
    report = calibration.format_report(c, "jetson-orin-nano")
    assert "tier 2 not fitted" in report and "fp16" in report and "tier 2 " not in \
        report.split("tier 2 not fitted")[0]


def test_trust_threshold():
    held = {"1": {"within_10pct": 0.45, "n": 20}, "2": {"within_10pct": 0.5, "n": 20}}
    assert calibration.trust(held, 1)["trusted"] is False
    assert "45% of 20" in calibration.trust(held, 1)["trust_reason"]
    assert calibration.trust(held, 2)["trusted"] is True


def test_untrusted_fit_is_written_marked_and_plan_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(calibration, "measure_subnets", _fake_measure(0.6))  # pure noise
    out = tmp_path / "noisy.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--samples", "8",
                              "--holdout", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: calibration not trusted" in res.output and "trusted: NO" in res.output
    c = yaml.safe_load(out.read_text())["calibration"]
    assert c["trusted"] is False and "fewer than 50%" in c["trust_reason"]
    plan = RUNNER.invoke(app, ["plan", "--device", str(out), "--task", "fashion-mnist",
                               "--top-k", "1"])
    assert plan.exit_code == 0, plan.output
    assert "warning: local: calibration not trusted" in plan.output


def test_trusted_fit_has_no_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(calibration, "measure_subnets", _fake_measure(0.01))
    out = tmp_path / "clean.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--samples", "8",
                              "--holdout", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output and "trusted: yes" in res.output
    assert yaml.safe_load(out.read_text())["calibration"]["trusted"] is True
    plan = RUNNER.invoke(app, ["plan", "--device", str(out), "--task", "fashion-mnist",
                               "--top-k", "1"])
    assert "not trusted" not in plan.output


def test_override_deviation_is_recorded_and_plan_warns(monkeypatch, tmp_path):
    monkeypatch.setattr(calibration, "measure_subnets", _fake_measure(0.01))
    out = tmp_path / "orin-on-cpu.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "jetson-orin-nano", "--force",
                              "--runtime", "onnxruntime-cpu", "--samples", "8",
                              "--holdout", "8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: deviation: measured with onnxruntime's CPU provider" in res.output
    c = yaml.safe_load(out.read_text())["calibration"]
    assert "not the profile's tensorrt" in c["runtime"]["deviation"] and c["forced"]
    assert c["fingerprint"]["runtime"] == "onnxruntime"
    plan = RUNNER.invoke(app, ["plan", "--device", str(out), "--task", "fashion-mnist",
                               "--top-k", "1"])
    assert plan.exit_code == 0, plan.output
    assert "calibration measured with onnxruntime's CPU provider" in plan.output


def test_fingerprint_compares_the_calibrated_runtime():
    """A TensorRT calibration is checked against this machine's TensorRT, not onnxruntime."""
    fp = current_fingerprint(None, "fp16", "tensorrt", None)
    ok, reason = fingerprint_matches({"fingerprint": fp})
    assert ok, reason


# -- the real thing, where TensorRT is --------------------------------------------------------

@pytest.mark.tensorrt
def test_tensorrt_calibration_measures_engines(tmp_path):
    pytest.importorskip("tensorrt")
    pytest.importorskip("polygraphy")
    pytest.importorskip("torch")
    out = tmp_path / "t4.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "nvidia-t4", "--force", "--precision",
                              "fp16", "--samples", "4", "--holdout", "2", "--rounds", "2",
                              "--iters", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tier 2 not fitted" in res.output
    c = load_profile(str(out)).calibration
    assert c["fingerprint"]["runtime"] == "tensorrt" and c["fingerprint"]["precision"] == "fp16"
    assert c["tier"] == 1 and c["tier2"] is None and c["measurement"]["device_seconds"] > 0
    assert all(v["n"] == 2 for v in c["validation"]["held_out"].values())


# -- on another machine (--host; end to end over ssh in test_remote.py) ----------------------

def test_host_measures_with_onnxruntime_and_checks_nothing_here(monkeypatch, tmp_path):
    monkeypatch.setattr(cr.importlib.util, "find_spec", lambda name: None)  # nothing here
    runner = cr.calibration_runner(load_profile("x86-laptop"), here=False)
    assert (runner.runtime, runner.provider, runner.precision) == (
        "onnxruntime", cr.CPU, "fp32")
    gpu = cr.calibration_runner(_variant("nvidia-t4", runtime={
        "name": "onnxruntime", "version": "1.17", "source": "policy: test"}), here=False)
    assert gpu.provider == cr.CUDA and gpu.tier2_unavailable  # checked on the device
    with pytest.raises(UsageError, match="--host measures with onnxruntime"):
        cr.calibration_runner(load_profile("jetson-orin-nano"), here=False)
    over = cr.calibration_runner(load_profile("jetson-orin-nano"), override="onnxruntime-cpu",
                                 here=False)
    assert over.provider == cr.CPU and "not the profile's tensorrt" in over.deviation
    res = RUNNER.invoke(app, ["calibrate", "--device", "jetson-orin-nano", "--host",
                              "me@device", "--out", str(tmp_path / "o.yaml")])
    assert_one_line_error(res, "--host measures with onnxruntime", "--runtime onnxruntime-cpu")
    assert list(tmp_path.iterdir()) == []


def test_device_script_stops_as_the_local_protocol_does():
    """time_subnets.py's copy of gtn_deploy.rounds (py3.8, no gtn_deploy on the device) decides
    the same rounds, order and stop from the same calls."""
    from gtn_deploy import rounds
    from gtn_deploy.bench import time_subnets as script

    rng = random.Random(5)
    base = [rng.uniform(0.1, 3.0) for _ in range(7)]
    noise = [rng.uniform(0.0, 0.2) for _ in range(7)]  # some converge, some do not

    def fake_timer():
        draw = random.Random(11)
        return lambda i: [base[i] * (1 + noise[i] * draw.random()) for _ in range(9)]

    plan = rounds.RoundPlan(min_rounds=3, max_rounds=12, iters=9, budget_s=1e9)
    ours = rounds.run_rounds(fake_timer(), 7, plan, random.Random(3))
    theirs = script.run_rounds(fake_timer(), 7, dataclasses.asdict(plan), random.Random(3))
    assert (theirs[0], theirs[1], theirs[2]) == (ours.rounds, ours.order, ours.stop)
    for i in range(7):
        assert script.robust_ms(theirs[0][i]) == ours.latency_ms(i)
        assert script.half_spread(theirs[0][i]) == ours.spread(i)


def test_device_script_matches_what_it_mirrors():
    import inspect
    import platform

    from gtn_deploy.bench import remote_calibrate as rc, subnets, time_subnets as script
    from gtn_deploy.machine import cpu_model, cpu_name

    defaults = inspect.signature(subnets.profile_interleaved).parameters
    assert (rc.PER_ROUND, rc.PROFILE_WARMUP) == (defaults["per_round"].default,
                                                 defaults["warmup"].default)
    assert cpu_name(script.cpuinfo(), platform.processor(), platform.machine()) == cpu_model()
    arm = {"cpu implementer": "0x41", "cpu part": "0xd42"}
    assert cpu_name(arm, "", "aarch64") == "arm-implementer-0x41-part-0xd42"
    assert cpu_name({}, "", "aarch64") == "aarch64"


def test_remote_record_and_report_say_whether_the_host_key_was_checked():
    from gtn_deploy.bench.remote import SshTarget
    from gtn_deploy.bench.remote_calibrate import RemoteSite

    site = RemoteSite(SshTarget.parse("me@board:2222", insecure_host_key=True), "python3.8")
    assert site.record() == {"host": "me@board:2222", "remote_python": "python3.8",
                             "host_key_checked": False}
    env = {"cpu_model": "Cortex-A78AE", "machine": "aarch64", "cpu_count": 6, "os": "Ubuntu",
           "python": "3.8.10", "numpy": "1.24.4", "power_mode": "NV Power Mode: 15W; 0"}
    lines = calibration._remote_lines({"remote": site.record(), "environment": env})
    assert lines == ["  measured on me@board:2222 over ssh (host key NOT checked: "
                     "--insecure-host-key): Cortex-A78AE (aarch64, 6 cores), Ubuntu, python "
                     "3.8.10, numpy 1.24.4, power mode NV Power Mode: 15W; 0"]
    assert calibration._remote_lines({"environment": env}) == []


def test_round_progress_lines_off_a_terminal(capsys):
    """Off a terminal: a line per round every subnet runs, then one per further round."""
    from gtn_deploy.rounds import RoundPlan

    plan = RoundPlan(min_rounds=2, max_rounds=6, iters=4)
    with calibration.RoundProgress(3, plan, profiled=2) as progress:
        for i in [0, 1, 2, 2, 0, 1]:  # two full rounds
            progress.round_done(i)
        for i in [1, 2, 2]:  # round 3 for two subnets, round 4 for one
            progress.round_done(i)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == ("calibrate: exporting 3 subnets, timing them in interleaved rounds of "
                        "4 calls, then profiling 2 per block (tier 2)")
    assert "step 3/6" in lines[1] and "step 6/6" in lines[2]  # StepProgress's own lines
    assert [ln.split(",")[0] for ln in lines[3:]] == ["calibrate: round 3", "calibrate: round 4"]
    assert "within 3% (until round 6 or 60 s)" in lines[3]
