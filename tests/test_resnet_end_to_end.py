"""The second family end to end, through the commands a user runs: plan --space resnet,
a vanilla or SFTN teacher, distil the plan's student, export its bundle, bench it; and the
whole pipeline (GTN teacher) on it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.run import run_pipeline
from gtn_deploy.plan_file import load_plan
from cli_helpers import assert_one_line_error

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


def test_sftn_teacher_for_a_resnet_student(tmp_path):
    plan = tmp_path / "plan.json"
    _ok(["plan", "-d", "raspberry-pi-5", "--space", "resnet", "--task", "digits",
         "--scale-budget", "--out", str(plan)])
    _ok(["teacher", "train", "--method", "sftn", "--space", "resnet", "--student",
         f"{plan}:0", *TINY, "--out", str(tmp_path / "t")])
    supernet = json.loads((tmp_path / "t" / "supernet" / "supernet.json").read_text())
    assert supernet["space"] == "resnet-digits"
    sampler = json.loads((tmp_path / "t" / "sampler.json").read_text())
    assert sampler["pool"] == [load_plan(plan).devices[0].best.arch.to_dict()]


def test_the_pipeline_runs_gtn_on_resnet(tmp_path):
    """plan -> GTN teacher (resnet supernet) -> KD from the supernet's weights -> bundle."""
    cfg = load_config(None, {
        "devices": "raspberry-pi-5", "space": "resnet", "task": "digits", "quick": True,
        "teacher_epochs": 1, "distill_epochs": 1, "limit_train": 400,
        "distill_limit_train": 400, "limit_val": 100, "batch_size": 32,
        "distill_batch_size": 32, "eval_images": 256, "int8": False, "baseline": "none"})
    out = tmp_path / "run"
    run = run_pipeline(cfg, out, log=lambda line: None)
    supernet = json.loads((run.teacher.path / "supernet" / "supernet.json").read_text())
    assert supernet["space"] == "resnet-digits"
    (b,) = run.branches
    assert b.arch().width_mults and load_plan(b.plan.path / "plan.json").family == "resnet"
    student = json.loads((b.student.path / "student.json").read_text())
    assert student["arch"]["family"] == "resnet" and student["meta"]["config"]["init"] == "supernet"
    manifest = json.loads((b.bundle.path / "bundle" / "manifest.json").read_text())
    assert manifest["family"] == "resnet"
    assert json.loads((out / "report.json").read_text())["settings"]["family"] == "resnet"


def test_a_plan_of_another_family_is_one_line_error(tmp_path):
    plan = tmp_path / "mbconv.json"
    _ok(["plan", "-d", "raspberry-pi-5", "--task", "digits", "--scale-budget", "--out",
         str(plan)])
    for flag in ("--pool", "--student"):
        res = RUNNER.invoke(app, ["teacher", "train", "--method", "gtn" if flag == "--pool"
                                  else "sftn", "--space", "resnet", flag, str(plan), *TINY,
                                  "--out", str(tmp_path / "t")])
        assert_one_line_error(res, "mbconv family", "--space resnet")
    assert not (tmp_path / "t").exists()
