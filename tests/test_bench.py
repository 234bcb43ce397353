"""gtnd bench on a real bundle: timing, refusals, --force, and no torch on the bench path."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtn_deploy.errors import UsageError
from gtn_deploy.timing import default_rounds, summarize, time_calls
from gtn_deploy.cli.main import app
from gtn_deploy.stats import percentile

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A Fashion-MNIST bundle for raspberry-pi-5 (so this x86/other host is the wrong device)."""
    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.export.bundle import ExportOptions, export_student
    from gtn_deploy.profiles import load_profile
    from gtn_deploy.supernet import build_student, save_student

    root = tmp_path_factory.mktemp("bench")
    space = get_space("fashion-mnist")
    arch = space.min_arch()
    save_student(root / "student", build_student(space, arch), arch, space)
    opts = ExportOptions(int8=False, eval_images=256, parity_images=256, calib_images=64,
                         name="tiny")
    return export_student(root / "student", load_profile("raspberry-pi-5"), root / "out",
                          opts).path


def test_percentiles_and_summary():
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0], batch_size=2, first_ms=50.0)
    assert s.p50_ms == 3.0 and s.min_ms == 1.0 and s.max_ms == 10.0
    assert percentile([1.0, 2.0], 90) == pytest.approx(1.9)
    assert s.throughput_ips == pytest.approx(2 * 1e3 / 4.0)
    timed = time_calls(lambda: sum(range(1000)), warmup=2, iters=7)
    assert timed.iters == 7 and 0 < timed.min_ms <= timed.p50_ms <= timed.max_ms
    assert timed.round_p90_ms == () and timed.to_dict()["round_p90_ms"] == []


def test_rounds_are_consecutive_slices_of_the_run():
    import time

    calls = []

    def slows_down_halfway():  # the machine's load arriving in the middle of a run
        calls.append(1)
        if len(calls) > 1 + 2 + 20:  # past the first call, the warm-up and 20 timed calls
            time.sleep(0.03)

    timed = time_calls(slows_down_halfway, warmup=2, iters=40, rounds=4)
    fast, slow = timed.round_p90_ms[:2], timed.round_p90_ms[2:]
    assert len(timed.round_p90_ms) == 4 and min(slow) >= 30 > max(fast)
    # consecutive slices of a list in call order, each with its own p90
    assert summarize([1.0] * 10 + [5.0] * 10, rounds=2).round_p90_ms == (1.0, 5.0)
    assert default_rounds(None) == 10 and default_rounds(35) == 3 and default_rounds(5) == 1
    with pytest.raises(UsageError, match="too few for 4 rounds"):
        time_calls(lambda: None, iters=30, rounds=4)


def test_wrong_device_refused_then_forced(bundle, tmp_path):
    res = RUNNER.invoke(app, ["bench", str(bundle), "--iters", "5"])
    assert res.exit_code != 0
    assert "is not a 'raspberry-pi-5' target" in res.output and "--force" in res.output
    out = tmp_path / "r.json"
    res = RUNNER.invoke(app, ["bench", str(bundle), "--iters", "20", "--threads", "1",
                              "--force", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "gtn_deploy.bench_result"
    assert any("raspberry-pi-5" in f for f in doc["forced"])
    t = doc["timing"]
    assert t["iters"] == 20 and t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] <= t["max_ms"]
    # 20 calls: two rounds of 10 (the fewest a round's p90 may rest on)
    assert len(t["round_p90_ms"]) == 2
    assert all(t["min_ms"] <= r <= t["max_ms"] for r in t["round_p90_ms"])
    assert doc["build_s"] > 0 and doc["memory"]["peak_rss_mb"] > 0
    env = doc["environment"]
    assert env["cpu_model"] and env["onnxruntime"]["version"] and env["threads"] == 1
    pred = doc["prediction"]
    assert pred["predicted_ms"] > 0
    assert pred["error"] == pytest.approx(pred["predicted_ms"] / t["p50_ms"] - 1, rel=1e-3)
    # the profile's p90 budget recorded at export, against the measured p90; forced onto
    # another machine, the verdict says it was not measured on the target
    from gtn_deploy.profiles import load_profile

    verdict = doc["budget"]
    assert verdict["budget_ms"] == load_profile("raspberry-pi-5").budgets.latency_ms
    assert verdict["source"] == "profile" and verdict["percentile"] == "p90"
    assert verdict["measured_p90_ms"] == t["p90_ms"] and verdict["on_target"] is False
    assert verdict["fits"] == (t["p90_ms"] <= verdict["budget_ms"])
    assert "budget: p90" in res.output and "not measured on the target device" in res.output


def test_budget_verdict_fits_or_over():
    import dataclasses

    from gtn_deploy.bench.run import budget_line, budget_verdict
    from cli_helpers import fixture_bundle
    from gtn_deploy.manifest import load_manifest

    fixture = fixture_bundle()
    manifest = dataclasses.replace(load_manifest(fixture), budget={
        "latency_ms": 2.0, "percentile": "p90", "source": "plan"})
    fits = budget_verdict(manifest, {"p90_ms": 1.5}, on_target=True)
    assert fits["fits"] and fits["headroom"] == 0.25
    assert budget_line(fits) == "  budget: p90 1.500 ms vs 2 ms (plan): fits, 25% headroom"
    over = budget_verdict(manifest, {"p90_ms": 3.0}, on_target=True)
    assert not over["fits"] and "OVER by 50%" in budget_line(over)
    older = dataclasses.replace(manifest, budget=None)
    assert budget_verdict(older, {"p90_ms": 1.0}, True) is None  # older bundles
    # rounds on both sides of the budget: the verdict stands but is flagged unsettled
    torn = budget_verdict(manifest, {"p90_ms": 1.9, "round_p90_ms": [1.6, 2.6, 1.7]}, True)
    assert torn["fits"] and torn["unsettled"] and torn["round_p90_range_ms"] == [1.6, 2.6]
    assert budget_line(torn).endswith("fits, 5% headroom; unsettled: the rounds' p90 ran "
                                      "1.600-2.600 ms, on both sides of the budget (rerun on "
                                      "a quiet machine)")
    calm = budget_verdict(manifest, {"p90_ms": 1.5, "round_p90_ms": [1.4, 1.6]}, True)
    assert not calm["unsettled"] and "unsettled" not in budget_line(calm)
    # of ten rounds, one burst at each end is set aside; a second one over the budget counts
    burst = [1.5] * 8 + [1.3, 2.6]
    assert not budget_verdict(manifest, {"p90_ms": 1.6, "round_p90_ms": burst}, True)[
        "unsettled"]
    phase = [1.5] * 7 + [1.3, 2.6, 2.4]
    assert budget_verdict(manifest, {"p90_ms": 1.7, "round_p90_ms": phase}, True)["unsettled"]


def test_tampered_bundle_refused(bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    (bad / "README.md").write_text("changed\n")
    res = RUNNER.invoke(app, ["bench", str(bad), "--iters", "5", "--force"])
    assert res.exit_code == 0  # --force runs past the hash problem...
    res = RUNNER.invoke(app, ["bench", str(bad), "--iters", "5"])
    assert res.exit_code != 0 and "README.md" in res.output  # ...and without it refuses
    assert "Traceback" not in res.output


def test_missing_backend_and_bad_flags(bundle):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        res = RUNNER.invoke(app, ["bench", str(bundle), "--backend", "tensorrt", "--force"])
        assert res.exit_code != 0 and "tensorrt" in res.output and "not installed" in res.output
    res = RUNNER.invoke(app, ["bench", str(bundle), "--backend", "tvm"])
    assert res.exit_code != 0 and "valid: onnxruntime, tensorrt, openvino, torch" in res.output
    res = RUNNER.invoke(app, ["bench", str(bundle), "--iters", "3", "--seconds", "1"])
    assert res.exit_code != 0 and "not both" in res.output
    res = RUNNER.invoke(app, ["bench", str(bundle), "--precision", "int8", "--force"])
    assert res.exit_code != 0 and "int8" in res.output
    for flags, words in ((["--rounds", "0"], "--rounds must be >= 1"),
                         (["--iters", "30", "--rounds", "4"], "too few for 4 rounds"),
                         (["--rounds", "2", "--host", "pi@pi5"], "--rounds is for a bench on")):
        res = RUNNER.invoke(app, ["bench", str(bundle), "--force", *flags])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output


def test_bench_path_never_imports_torch(bundle, tmp_path):
    """A tarball bundle benched in a fresh interpreter: torch must stay out of sys.modules."""
    tarball = bundle.parent / f"{bundle.name}.tar.gz"
    assert tarball.is_file()
    code = (
        "import sys\n"
        "from gtn_deploy.cli.main import app\n"
        "try:\n"
        f"    app(['bench', {str(tarball)!r}, '--iters', '5', '--force', '--json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("NO_TORCH")
    doc = json.loads(out.stdout[:out.stdout.rindex("}") + 1])
    assert doc["timing"]["iters"] == 5


def test_torch_backend_runs(bundle):
    res = RUNNER.invoke(app, ["bench", str(bundle), "--backend", "torch", "--iters", "5",
                              "--force", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{"):])
    assert doc["backend"] == "torch" and doc["timing"]["iters"] == 5


@pytest.mark.parametrize("flag", ["--batch-size", "--batch"])
def test_batch_size_and_its_hidden_old_name_reach_the_bench(flag):
    """--batch-size as everywhere else; --batch still works, and help shows only the new."""
    from cli_helpers import assert_one_line_error

    fixture = Path(__file__).parent / "fixtures" / "bundle_min"  # a fixed batch of 1
    res = RUNNER.invoke(app, ["bench", str(fixture), flag, "2", "--iters", "5"])
    assert_one_line_error(res, "--batch-size 2: this bundle's input has a fixed batch of 1")
    text = RUNNER.invoke(app, ["bench", "-h"], env={"COLUMNS": "200"}).output
    assert "--batch-size" in text and "old name --batch still works, hidden" in text
    assert not re.search(r"^\W*--batch(?!-)\b", text, re.M), text  # no row of its own
