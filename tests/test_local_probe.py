"""The local profile's probe: its models run, its figures follow from the timings and stay in
bounds, it is cached per machine, and it never decides a test by this machine's speed (the
timings here are fakes, except one run that checks only that numbers come back)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gtn_deploy import local_probe as lp
from gtn_deploy.local_profile import local_profile
from gtn_deploy.profiles import local_device_profile

FAKE_MS = {"invoke": 0.010, "chain": 0.026, "memory": 0.020, "conv": 0.060,
           "pointwise": 0.030, "depthwise": 0.040}


@pytest.fixture
def probe_on(monkeypatch, tmp_path):
    monkeypatch.setenv("GTND_LOCAL_PROBE", "on")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake_measure(*args, **kwargs):
        calls.append(1)
        return dict(FAKE_MS)

    monkeypatch.setattr(lp, "measure", fake_measure)
    return calls


def test_probe_models_are_valid_onnx_and_run():
    import onnxruntime as ort

    for name, (model, shape, work) in lp.probe_models().items():
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {session.get_inputs()[0].name: np.ones(shape, np.float32)})
        assert out.shape[0] == 1 and out.shape[2:] == shape[2:] and np.isfinite(out).all(), name
        assert work >= 0
    onnx = pytest.importorskip("onnx")
    for model, _, _ in lp.probe_models().values():
        onnx.checker.check_model(onnx.load_from_string(model))


def test_figures_follow_from_the_timings():
    f = lp.figures(FAKE_MS)
    assert f["kernel_us"] == pytest.approx(16 / (lp.CHAIN - 1))  # (26 - 10) us over 16 nodes
    assert f["invoke_us"] == pytest.approx(10 - f["kernel_us"])
    own_s = (40 - 10) * 1e-6  # depthwise less the call and one kernel
    flops = lp.probe_models()["depthwise"][2]
    assert f["gflops"]["depthwise"] == pytest.approx(flops / own_s / 1e9)


def test_figures_are_clamped_to_their_bounds():
    broken = {**FAKE_MS, "chain": 0.001, "conv": 1e-9, "memory": 500.0}
    f = lp.figures(broken)
    assert f["kernel_us"] == lp.BOUNDS["kernel_us"][0]  # a chain faster than one node
    assert f["gflops"]["conv"] == lp.BOUNDS["gflops"][1]
    assert f["bandwidth_gbs"] >= lp.BOUNDS["bandwidth_gbs"][0]
    assert all(math.isfinite(v) for v in f["gflops"].values())


def test_probe_runs_once_then_reads_its_cache(probe_on, tmp_path):
    first = lp.probe()
    assert first is not None and probe_on == [1]
    assert lp.cache_path() == tmp_path / "gtn_deploy" / "local_probe.json"
    assert json.loads(lp.cache_path().read_text())["measured_ms"] == FAKE_MS
    assert lp.probe()["figures"] == first["figures"] and probe_on == [1]  # cached
    data = json.loads(lp.cache_path().read_text())
    data["key"]["onnxruntime"] = "0.0"  # another runtime: measured again
    lp.cache_path().write_text(json.dumps(data))
    lp.probe()
    lp.cache_path().write_text('{"key": 1')  # truncated: measured again
    lp.probe()
    assert probe_on == [1, 1, 1]


def test_a_bad_cache_value_is_measured_again(probe_on):
    lp.probe()
    data = json.loads(lp.cache_path().read_text())
    data["measured_ms"]["conv"] = "NaN"
    lp.cache_path().write_text(json.dumps(data))
    assert lp.probe()["measured_ms"] == FAKE_MS and len(probe_on) == 2


def test_local_profile_takes_the_probe_figures(probe_on):
    profile = local_device_profile()
    lm = profile.latency_model
    f = lp.figures(FAKE_MS)
    peak = profile.peak_flops("fp32")
    for op in ("conv", "pointwise", "depthwise"):
        assert lm.efficiency(op) == pytest.approx(min(1.0, f["gflops"][op] * 1e9 / peak))
    assert lm.kernel_overhead_us == pytest.approx(f["kernel_us"])
    assert lm.invoke_overhead_us == pytest.approx(f["invoke_us"])
    assert profile.memory_bandwidth() == pytest.approx(f["bandwidth_gbs"] * 1e9)
    assert lm.expected_error == 0.3
    source = profile.spec.latency_model.efficiency.depthwise.source
    assert source.startswith("measured: local probe") and str(lp.cache_path()) in source


def test_efficiency_never_exceeds_one(probe_on, monkeypatch):
    fast = {**FAKE_MS, "pointwise": 0.0100001}  # all but no time left: huge GFLOP/s
    monkeypatch.setattr(lp, "measure", lambda *a, **k: dict(fast))
    assert local_device_profile().latency_model.efficiency("pointwise") == 1.0


def test_probe_off_or_failing_keeps_the_seeds(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("GTND_LOCAL_PROBE", "off")
    seeds = local_profile()["latency_model"]
    monkeypatch.setenv("GTND_LOCAL_PROBE", "on")

    def broken(*args, **kwargs):
        raise RuntimeError("no onnxruntime here")

    monkeypatch.setattr(lp, "measure", broken)
    assert lp.probe() is None and local_profile()["latency_model"] == seeds
    assert not lp.cache_path().exists()


def test_an_unwritable_cache_still_gives_figures(probe_on, monkeypatch, tmp_path):
    (tmp_path / "gtn_deploy").write_text("a file where the cache folder belongs")
    assert lp.probe() is not None and lp.probe() is not None
    assert len(probe_on) == 2  # nothing cached: measured each time


def test_a_real_probe_returns_positive_timings():
    """Plumbing only: every model timed, in a bounded time; no speed is asserted."""
    ms = lp.measure(budget_s=0.2)
    assert set(ms) == set(lp.probe_models())
    assert all(0 < v < 1e3 and math.isfinite(v) for v in ms.values())


def test_the_local_profile_names_its_cores_in_good_english(monkeypatch):
    from gtn_deploy import machine

    assert [machine.cores_text(n) for n in (1, 2, None)] == ["1 core", "2 cores", "? cores"]
    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    assert local_profile()["name"].endswith(", 1 core)")
