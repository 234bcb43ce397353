import json

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_plan_jetson_alias_prints_a_table_and_writes_plan(tmp_path):
    out = tmp_path / "plan.json"
    result = invoke("plan", "--device", "jetson", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "jetson-orin-nano" in result.output and "latency model tier 0" in result.output
    plan = json.loads(out.read_text())
    assert plan["schema_version"] == 1 and plan["kind"] == "gtn_deploy.plan"
    device = plan["devices"][0]
    assert device["device"] == "jetson-orin-nano" and len(device["profile_sha256"]) == 64
    assert len(device["candidates"]) == 5 and device["pareto"]
    for cand in device["candidates"]:
        assert cand["latency_ms"] <= device["budget"]["effective_latency_ms"] + 1e-9
        assert cand["memory_mb"] <= device["budget"]["memory_mb"]


def test_plan_several_devices_json():
    result = invoke("plan", "--device", "rpi5,jetson-nano", "--device", "x86-laptop",
                    "--task", "fashion-mnist", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [d["device"] for d in plan["devices"]] == ["raspberry-pi-5", "jetson-nano", "x86-laptop"]
    assert plan["task"] == "fashion-mnist"


def test_plan_user_profile_file(tmp_path):
    from gtn_deploy.profiles import load_profile

    src = load_profile("raspberry-pi-4").source_path
    mine = tmp_path / "my-pi.yaml"
    mine.write_text(src.read_text())
    result = invoke("plan", "--device", str(mine), "--task", "cifar100", "--top-k", "1")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, message", [
    (("--device", "jetsn"), "unknown device 'jetsn'; closest: jetson"),
    (("--device", "jetson", "--latency-ms", "0"), "--latency-ms must be > 0"),
    (("--device", "jetson", "--memory-mb", "-5"), "--memory-mb must be > 0"),
    (("--device", "jetson", "--task", "mnist"), "unknown task 'mnist'; valid tasks"),
    (("--device", "jetson", "--precision", "fp8"), "unknown precision 'fp8'"),
    (("--device", "raspberry-pi-4", "--precision", "int8x"), "unknown precision"),
    (("--device", "jetson", "--latency-ms", "0.01"), "smallest network reaches"),
])
def test_plan_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "plan.json"
    result = invoke("plan", *args, "--out", str(out))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_unsupported_precision_names_the_supported_ones():
    result = invoke("plan", "--device", "jetson-nano", "--precision", "int8")
    assert result.exit_code != 0 and "supported" in result.output


@pytest.mark.parametrize("flag, value", [
    ("--latency-ms", "inf"), ("--latency-ms", "nan"), ("--latency-ms", "0"),
    ("--memory-mb", "inf"), ("--batch-size", "0"), ("--margin", "nan"), ("--margin", "1")])
def test_bad_budget_numbers_are_one_error_line(flag, value, tmp_path):
    from typer.testing import CliRunner

    from gtn_deploy.cli.main import app

    out = tmp_path / "plan.json"
    result = CliRunner().invoke(app, ["plan", "--device", "rpi4", flag, value,
                                      "--out", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "error:" in result.output and flag in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("command", [["plan"], ["bench"], ["teacher", "train"], ["pipeline"],
                                     ["bundle", "verify"]])
def test_dash_h_is_help_everywhere(command):
    from typer.testing import CliRunner

    from gtn_deploy.cli.main import app

    result = CliRunner().invoke(app, [*command, "-h"])
    assert result.exit_code == 0 and "Usage:" in result.output, result.output


def _table_latencies(output: str) -> list[float]:
    rows = [line.split() for line in output.splitlines() if line[:3].strip().isdigit()]
    return [float(row[next(i for i, v in enumerate(row) if v.startswith("["))  - 1])
            for row in rows]


def test_plan_jetson_shows_distinct_tiers_and_says_the_budget_does_not_bind():
    result = invoke("plan", "--device", "jetson")
    assert result.exit_code == 0, result.output
    latencies = _table_latencies(result.output)
    assert len(latencies) == 5 and len(set(latencies)) == 5
    assert all(b <= a * 0.8 + 0.01 for a, b in zip(latencies, latencies[1:])), latencies
    assert "note: the budget does not bind" in result.output
    assert "--latency-ms below" in result.output
    assert "within band = yes when" in result.output  # the band explained in one line


def test_plan_tight_budget_has_no_binding_note():
    result = invoke("plan", "--device", "jetson", "--latency-ms", "2")
    assert result.exit_code == 0, result.output
    assert "does not bind" not in result.output and "within band" in result.output
    plan = json.loads(invoke("plan", "--device", "jetson", "--latency-ms", "2", "--json").output)
    assert plan["devices"][0]["budget_binding"]["binds"] is True
