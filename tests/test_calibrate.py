"""Latency calibration: the fit beats tier 0, files are new, fingerprints are checked."""

from __future__ import annotations

import random

import pytest
import yaml
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.cli.main import app
from gtn_deploy.cost import calibrate as cal
from gtn_deploy.fingerprint import current_fingerprint, fingerprint_matches
from gtn_deploy.cost.latency import predict_latency
from gtn_deploy.errors import ProfileError
from gtn_deploy.profiles import load_profile, profiles_dir

RUNNER = CliRunner()
SPACE = get_space("fashion-mnist")


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """``gtnd calibrate --device local`` on a handful of tiny subnets."""
    out = tmp_path_factory.mktemp("cal") / "local-test.yaml"
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--samples", "6",
                              "--holdout", "3", "--rounds", "2", "--iters", "10",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_local_profile_validates():
    from gtn_deploy.profiles import local_device_profile

    p = local_device_profile()
    assert p.id == "local" and p.kind == "cpu" and p.peak_flops("fp32") > 1e9
    assert p.runtime.name == "onnxruntime"
    import platform

    assert p.matches_target(platform.machine(), p.spec.cpu.model)


def test_fit_beats_tier0_and_profile_predicts(calibrated):
    out, output = calibrated
    assert "tier 1" in output and "tier 2" in output and str(out) in output
    profile = load_profile(str(out))
    c = profile.calibration
    train = c["validation"]["train"]
    # The fit must reduce the error on the subnets it was fitted to, by a wide margin.
    assert train["1"]["mape"] < 0.5 * train["0"]["mape"]
    assert train["2"]["mape"] < 0.5 * train["0"]["mape"]
    assert c["measurement"]["device_seconds"] > 0 and c["tier"] in (1, 2)
    m = c["measurement"]  # one interleaved rotation, its noise reported beside the accuracy
    assert m["stop"] in ("converged", "max_rounds", "budget") and 2 <= m["rounds"][0]
    assert m["spread_median"] >= 0 and m["spread_between_rounds_median"] >= 0
    assert "noise: p10 spread" in output
    # measured with the profile's runtime (local: onnxruntime CPU), and the fit's trust shown
    assert c["runtime"]["name"] == "onnxruntime" and c["runtime"]["tier2"] is True
    assert c["runtime"]["deviation"] is None and isinstance(c["trusted"], bool)
    assert "held-out subnets within +-10%" in c["trust_reason"] and "trusted: " in output
    est = predict_latency(SPACE, SPACE.max_arch(), profile)
    assert est.tier == c["tier"] and est.low_ms < est.latency_ms < est.high_ms
    assert est.fingerprint["runtime"] == "onnxruntime"
    # Larger nets predict slower, and another precision falls back to tier 0.
    assert est.latency_ms > predict_latency(SPACE, SPACE.min_arch(), profile).latency_ms
    assert predict_latency(SPACE, SPACE.max_arch(), profile, precision="int8").tier == 0
    assert predict_latency(SPACE, SPACE.max_arch(), profile, batch_size=4).tier == 1
    imagenet = get_space("imagenet")  # not calibrated on: tier 1 only
    assert predict_latency(imagenet, imagenet.min_arch(), profile).tier == 1


def test_tier1_fit_recovers_known_coefficients():
    """Synthetic latencies from known coefficients: NNLS finds them back."""
    from gtn_deploy.profiles import local_device_profile
    from gtn_deploy.cost.analytic import network_layers

    truth = cal.Tier1((("conv", 2e-11), ("pointwise", 3e-11), ("depthwise", 9e-11),
                       ("se", 5e-11), ("linear", 4e-11)), 1e-10, 2e-6, 3e-5, 4)
    rng = random.Random(3)
    archs = list({SPACE.sample(rng) for _ in range(40)})
    y = [truth.seconds(network_layers(SPACE, a)) * 1e3 for a in archs]
    start = cal.tier1_from_profile(local_device_profile(), "fp32")
    fitted = cal.fit_tier1(SPACE, archs, y, start)
    pred = [fitted.seconds(network_layers(SPACE, a)) * 1e3 for a in archs]
    assert cal.accuracy(pred, y)["max_abs_error"] < 0.02


def test_shipped_profile_never_overwritten(calibrated, tmp_path):
    from gtn_deploy.bench.calibration import write_calibrated_profile

    out, _ = calibrated
    profile = load_profile(str(out))
    shipped = profiles_dir() / "raspberry-pi-5.yaml"
    before = shipped.read_bytes()
    with pytest.raises(ProfileError, match="shipped profiles folder"):
        write_calibrated_profile(profile, profile.calibration, shipped)
    other = tmp_path / "mine.yaml"
    other.write_bytes(before)  # an uncalibrated profile elsewhere is not overwritten either
    with pytest.raises(ProfileError, match="not a calibrated profile"):
        write_calibrated_profile(profile, profile.calibration, other)
    assert shipped.read_bytes() == before and other.read_bytes() == before
    res = RUNNER.invoke(app, ["calibrate", "--device", "local", "--samples", "2",
                              "--out", str(shipped)])
    assert res.exit_code != 0 and shipped.read_bytes() == before


def test_fingerprint_check_and_plan_warning(calibrated, tmp_path):
    out, _ = calibrated
    c = load_profile(str(out)).calibration
    ok, reason = fingerprint_matches(c)
    assert ok, reason
    ok, reason = fingerprint_matches(c, {**current_fingerprint(), "threads": 4})
    assert not ok and "threads" in reason
    data = yaml.safe_load(out.read_text())
    data["calibration"]["fingerprint"]["runtime_version"] = "0.0.1"
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump(data))
    res = RUNNER.invoke(app, ["plan", "--device", str(moved), "--task", "fashion-mnist",
                              "--top-k", "1"])
    assert res.exit_code == 0, res.output
    assert "fingerprint does not match" in res.output and "runtime_version" in res.output


def test_wrong_device_calibration_refused():
    import platform

    if platform.machine() == "aarch64":
        pytest.skip("this host could be a Jetson")
    res = RUNNER.invoke(app, ["calibrate", "--device", "jetson-orin-nano", "--samples", "4"])
    assert res.exit_code != 0 and "not a 'jetson-orin-nano' target" in res.output


def test_accuracy_metrics():
    m = cal.accuracy([1.0, 2.2, 2.9, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert m["within_10pct"] == 0.75 and m["kendall_tau"] == 1.0
    assert m["mape"] == pytest.approx((0 + 0.1 + 1 / 30 + 0.25) / 4, abs=1e-4)
    assert cal.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
