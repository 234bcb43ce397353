"""``--json``: one JSON document on stdout, nothing else there, snake_case keys with units."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from gtn_deploy.cli.main import app

FIXTURE = Path(__file__).parent / "fixtures" / "bundle_min"


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart already
        return CliRunner()


def _stdout_json(result):
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


def test_profiles_list_json_keys_carry_units_and_numbers_are_numbers():
    rows = _stdout_json(_runner().invoke(app, ["profiles", "list", "--json"]))
    orin = next(r for r in rows if r["id"] == "jetson-orin-nano")
    assert orin["latency_budget_ms"] == 10 and orin["memory_budget_mb"] == 1024
    assert orin["latency_percentile"] == "p90" and orin["batch_size"] == 1
    for row in rows:
        assert all(key == key.lower() and " " not in key for key in row), row
        assert isinstance(row["latency_budget_ms"], float)


def test_bundle_verify_json_ok_and_not_ok(tmp_path):
    result = _runner().invoke(app, ["bundle", "verify", str(FIXTURE), "--json"])
    assert result.exit_code == 0, result.output
    doc = _stdout_json(result)
    assert doc["ok"] is True and doc["problems"] == [] and doc["files_checked"] > 0
    assert doc["models"][0]["output_shape"][-1] == 10
    copy = tmp_path / "b"
    shutil.copytree(FIXTURE, copy)
    (copy / "README.md").write_text("changed")
    result = _runner().invoke(app, ["bundle", "verify", str(copy), "--json"])
    assert result.exit_code == 1
    doc = _stdout_json(result)
    assert doc["ok"] is False and any("README.md" in p for p in doc["problems"])


def test_export_json_keeps_library_prints_off_stdout(monkeypatch, tmp_path):
    import gtn_deploy.cli.export as cli_export  # the command's own binding of the library call

    def fake_export(student, profile, out, options):
        print("chatter from a library")
        return SimpleNamespace(path=out / "b", tarball=out / "b.tar.gz", seconds=1.23456,
                               manifest=SimpleNamespace(doc={"name": "b", "metrics": {
                                   "fp32_top1": 90.0}}))

    monkeypatch.setattr(cli_export, "export_student", fake_export)
    result = _runner().invoke(app, ["export", "--student", str(tmp_path / "s"), "--device",
                                    "jetson", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    doc = _stdout_json(result)
    assert doc["elapsed_s"] == 1.235 and doc["manifest"]["metrics"]["fp32_top1"] == 90.0
    assert doc["bundle_path"].endswith("b") and doc["tarball_path"].endswith("b.tar.gz")
    assert "chatter" not in result.stdout


def test_calibrate_json(monkeypatch, tmp_path):
    import gtn_deploy.cli.calibrate as cli_calibrate

    def fake_calibrate(*args, on_measured, **kwargs):
        on_measured({"tier": 1})
        sys.stdout.write("measuring...\n")
        return tmp_path / "p.yaml", {"tier": 1, "validation": {}}

    monkeypatch.setattr(cli_calibrate, "calibrate_device", fake_calibrate)
    monkeypatch.setattr(cli_calibrate, "format_report", lambda cal, device: "human report")
    result = _runner().invoke(app, ["calibrate", "--device", "local", "--json"])
    assert result.exit_code == 0, result.output
    doc = _stdout_json(result)
    assert doc == {"profile_path": str(tmp_path / "p.yaml"),
                   "calibration": {"tier": 1, "validation": {}}}


def test_pipeline_json(monkeypatch, tmp_path):
    import gtn_deploy.cli.pipeline as cli_pipeline

    def fake_run(cfg, out, log):
        log("a stage line")
        out.mkdir(parents=True)
        (out / "report.json").write_text(json.dumps({"devices": [], "teacher": {}}))
        return SimpleNamespace(stages_run=["plan-local"])

    monkeypatch.setattr(cli_pipeline, "run_pipeline", fake_run)
    out = tmp_path / "run"
    result = _runner().invoke(app, ["pipeline", "--devices", "local", "--out", str(out),
                                    "--json"])
    assert result.exit_code == 0, result.output
    doc = _stdout_json(result)
    assert doc["stages_run"] == ["plan-local"] and doc["report"]["devices"] == []
    assert doc["report_html_path"] == str(out / "report.html")


# -- teacher train, distill and predictor fit: a summary by default, JSON only when asked --

TEACHER_SUMMARY = {"method": "gtn", "teacher": "resnet20", "task": "digits",
                   "teacher_metrics": {"val_top1": 91.25, "test_top1": 90.5},
                   "supernet_val": {"max": {"arch": "r8", "top1": 80.0}},
                   "train_time_s": 12.3}


def _fake_trainer(monkeypatch):
    import gtn_deploy.train.trainer as trainer

    class FakeTrainer:
        def __init__(self, cfg, out, resume=False, device="auto"):
            self.info = SimpleNamespace(is_main=True, enabled=False)

        def run(self):
            print("library chatter")
            return TEACHER_SUMMARY

        def close(self):
            pass

    monkeypatch.setattr(trainer, "TeacherTrainer", FakeTrainer)


def test_teacher_train_prints_a_summary_and_json_only_when_asked(monkeypatch, tmp_path):
    _fake_trainer(monkeypatch)
    args = ["teacher", "train", "--task", "digits", "--out", str(tmp_path / "run")]
    human = _runner().invoke(app, args)
    assert human.exit_code == 0, human.output
    assert "{" not in human.stdout and "val top-1 91.25%" in human.stdout
    doc = _stdout_json(_runner().invoke(app, [*args, "--json"]))
    assert doc == {"out_dir": str(tmp_path / "run"), "method": "gtn", "val_top1": 91.25,
                   "test_top1": 90.5, "train_time_s": 12.3}


def test_distill_prints_a_line_per_student_and_json_only_when_asked(monkeypatch, tmp_path):
    import gtn_deploy.train.kd_run as kd_run

    def fake_distill_plan(plan, source, cfg, out, candidate, resume, device):
        print("library chatter")
        return {"rank": 0, "students": [
            {"id": "c0", "arch_summary": "r8 d1", "method": "kd", "train_time_s": 3.0,
             "metrics": {"val_top1": 70.0, "test_top1": 69.5}}]}

    monkeypatch.setattr(kd_run, "distill_plan", fake_distill_plan)
    out = tmp_path / "kd"
    args = ["distill", "--plan", str(tmp_path / "plan.json"), "--teacher", "none", "--out",
            str(out)]
    human = _runner().invoke(app, args)
    assert human.exit_code == 0, human.output
    assert "{" not in human.stdout and "c0 (kd): val top-1 70.00%" in human.stdout
    doc = _stdout_json(_runner().invoke(app, [*args, "--json"]))
    assert doc == {"out_dir": str(out), "students": [
        {"id": "c0", "out_dir": str(out / "c0"), "arch": "r8 d1", "method": "kd",
         "val_top1": 70.0, "test_top1": 69.5, "train_time_s": 3.0}]}


def _fake_subnets(monkeypatch, n: int = 10):
    import random

    import gtn_deploy.train.kd_subnets as kd_subnets
    from gtn_deploy.spaces.mbconv import get_space

    space = get_space("digits")

    def fake_evaluate(teacher, samples, seed, *args, on_result=None, **kwargs):
        rows = []
        for i in range(samples):
            arch = space.sample(random.Random(i))
            rows.append({"arch": arch.to_dict(), "summary": arch.summary(),
                         "top1": 50.0 + i})
        return space, rows

    monkeypatch.setattr(kd_subnets, "evaluate_supernet_subnets", fake_evaluate)


def test_predictor_fit_prints_a_summary_and_json_only_when_asked(monkeypatch, tmp_path):
    _fake_subnets(monkeypatch)
    out = tmp_path / "pred.json"
    args = ["predictor", "fit", "--teacher", str(tmp_path), "--out", str(out), "--samples",
            "10", "--holdout", "3", "--torch-device", "cpu"]
    human = _runner().invoke(app, args)
    assert human.exit_code == 0, human.output
    assert "{" not in human.stdout and "predictor fitted on 10 subnets" in human.stdout
    assert "on 3 held-out subnets" in human.stdout
    doc = _stdout_json(_runner().invoke(app, [*args, "--json"]))
    assert doc["predictor_path"] == str(out) and doc["n"] == 10 and doc["holdout_n"] == 3
    assert doc["subnets_path"] == str(tmp_path / "pred.subnets.json")
