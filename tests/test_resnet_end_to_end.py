"""The second family end to end, through the commands a user runs: plan --space resnet,
a vanilla teacher, distil the plan's student, export its bundle, bench it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from gtn_deploy.plan_file import load_plan

pytest.importorskip("torch")
RUNNER = CliRunner()
TINY = ["--task", "digits", "--epochs", "1", "--batch-size", "32", "--limit-train", "128",
        "--limit-val", "64", "--no-progress", "--torch-device", "cpu"]


def _ok(args: list[str]):
    res = RUNNER.invoke(app, args)
    assert res.exit_code == 0, res.output
    return res


def test_plan_distil_export_bench_a_resnet_student(tmp_path):
    plan = tmp_path / "plan.json"
    _ok(["plan", "-d", "raspberry-pi-5", "--space", "resnet", "--task", "digits",
         "--scale-budget", "--top-k", "2", "--out", str(plan)])
    doc = json.loads(plan.read_text())
    assert doc["family"] == "resnet" and doc["space"] == "resnet-digits"
    planned = load_plan(plan)
    assert planned.family == "resnet" and planned.devices[0].best.arch.width_mults

    teacher = tmp_path / "teacher"
    _ok(["teacher", "train", "--method", "vanilla", "--space", "resnet", *TINY,
         "--out", str(teacher)])
    students = tmp_path / "students"
    _ok(["distill", "--plan", str(plan), "--teacher", str(teacher), "--candidate", "0",
         *[a for a in TINY if a != "--task" and a != "digits"], "--calib-images", "64",
         "--out", str(students)])
    student = json.loads((students / "c0" / "student.json").read_text())
    assert student["space"] == "resnet-digits" and student["arch"]["family"] == "resnet"

    bundles = tmp_path / "bundles"
    _ok(["export", "--student", str(students / "c0"), "--device", "local", "--no-int8",
         "--out", str(bundles), "--name", "rn"])
    manifest = json.loads((bundles / "rn" / "manifest.json").read_text())
    assert manifest["family"] == "resnet" and manifest["latency_prediction"]["latency_ms"] > 0
    res = _ok(["bench", str(bundles / "rn"), "--iters", "20", "--threads", "1", "--json"])
    assert json.loads(res.stdout)["timing"]["p50_ms"] > 0


def test_gtn_on_resnet_is_one_line_error(tmp_path):
    res = RUNNER.invoke(app, ["teacher", "train", "--method", "gtn", "--space", "resnet",
                              *TINY, "--out", str(tmp_path / "t")])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--method vanilla" in lines[0], res.output
