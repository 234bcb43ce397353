"""End to end on a tiny Fashion-MNIST setting: plan, GTN teacher, distil, export, bench, report."""

import json

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from gtn_deploy.manifest import verify_files
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.run import run_pipeline

# Small, but a setting that learns by a wide margin on any machine whatever student the
# (machine-probed) `local` plan picks: ~60 teacher and ~60 student steps on 1,000 images
# (300 images and 4 steps once gave a student 9.4%, chance level).
TINY = {"quick": True, "teacher_epochs": 2, "distill_epochs": 2, "limit_train": 1000,
        "distill_limit_train": 1000, "limit_val": 200, "batch_size": 32,
        "distill_batch_size": 32, "distill_lr": 0.05, "eval_images": 256,
        "int8": False, "bench_iters": 20}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    cfg = load_config(None, {"devices": "local,raspberry-pi-5", **TINY})
    return cfg, out, run_pipeline(cfg, out, log=lambda line: None)


def test_every_stage_ran_and_the_report_is_complete(first_run):
    _, out, run = first_run
    assert run.stages_run[0].startswith("plan-") and "teacher" in run.stages_run
    assert {f"bundle-{d}" for d in ("local", "raspberry-pi-5")} <= set(run.stages_run)
    assert "bench-local" in run.stages_run and "bench-raspberry-pi-5" not in run.stages_run
    report = (out / "report.md").read_text()
    assert "| local " in report and "| raspberry-pi-5 " in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and 'src="http' not in html
    data = json.loads((out / "report.json").read_text())
    for device in data["devices"]:
        assert device["fp32_top1"] > 35 and device["ce_top1"] > 35  # chance is 10%
        assert verify_files(device["bundle"]) == []
    # benched here: the measured p90, the range of its rounds' p90 and the noise flag
    local = next(d for d in data["devices"] if d["device"] == "local")
    lo, hi = local["measured_p90_range_ms"]
    assert 0 < lo <= hi and isinstance(local["measured_noisy"], bool)


def test_kd_gain_is_the_difference_of_the_two_measured_accuracies(first_run):
    _, out, run = first_run
    data = json.loads((out / "report.json").read_text())
    for b, device in zip(run.branches, data["devices"]):
        kd = json.loads((b.student.path / "summary.json").read_text())["metrics"]["test_top1"]
        ce = json.loads((b.baseline.path / "summary.json").read_text())
        assert ce["method"] == "ce" and ce["init"] == "supernet"
        assert device["ce_top1"] == ce["metrics"]["test_top1"]
        assert device["kd_gain"] == pytest.approx(kd - ce["metrics"]["test_top1"], abs=1e-3)
    report = (out / "report.md").read_text()
    assert "CE baseline %" in report and ("KD beat" in report or "KD LOST" in report)


def test_rerun_is_all_cached_and_a_new_device_runs_only_its_branch(first_run):
    cfg, out, _ = first_run
    again = run_pipeline(cfg, out, log=lambda line: None)
    assert again.stages_run == []
    more = load_config(None, {"devices": "local,raspberry-pi-5,x86-laptop", **TINY})
    grown = run_pipeline(more, out, log=lambda line: None)
    assert sorted(grown.stages_run) == ["baseline-x86-laptop", "bundle-x86-laptop",
                                        "plan-x86-laptop", "student-x86-laptop"]
    assert "x86-laptop (added later)" in (out / "report.md").read_text()


def test_unknown_device_stops_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["pipeline", "--devices", "local,jetsn", "--out", str(out)])
    assert result.exit_code != 0 and "unknown device 'jetsn'" in result.output
    assert not out.exists()


def test_baseline_none_skips_the_ce_runs(first_run, tmp_path):
    cfg, out, _ = first_run
    # same teacher settings: reuse the first run's folder's stages by copying nothing; a new
    # folder with one device and --baseline none must run no baseline stage
    tiny = {**TINY, "teacher_epochs": 1, "distill_epochs": 1, "limit_train": 300,
            "distill_limit_train": 300, "baseline": "none"}
    run = run_pipeline(load_config(None, {"devices": "raspberry-pi-5", **tiny}),
                       tmp_path / "run", log=lambda line: None)
    assert not any(s.startswith("baseline-") for s in run.stages_run)
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    assert data["devices"][0]["ce_top1"] is None and data["devices"][0]["kd_gain"] is None
    assert "--baseline none" in (tmp_path / "run" / "report.md").read_text()


def test_baseline_vanilla_adds_a_vanilla_teacher_and_its_students_only(first_run):
    """--baseline ce,vanilla on a finished run: the GTN teacher, the KD students and the CE
    baselines stay cached (their keys do not change); a vanilla teacher of the same network
    and epochs is trained, each device's student is distilled from it, and the report sets
    KD from GTN beside KD from vanilla."""
    cfg, out, first = first_run
    both = load_config(None, {"devices": "local,raspberry-pi-5", **TINY,
                              "baseline": "ce,vanilla"})
    run = run_pipeline(both, out, log=lambda line: None)
    assert sorted(run.stages_run) == ["teacher-vanilla", "vanilla-local",
                                      "vanilla-raspberry-pi-5"]
    config = json.loads((run.vanilla_teacher.path / "config.json").read_text())["config"]
    gtn = json.loads((run.teacher.path / "config.json").read_text())["config"]
    assert config["method"] == "vanilla" and gtn["method"] == "gtn"
    same = ("teacher", "epochs", "seed", "limit_train", "batch_size", "lr", "augment")
    assert {k: config[k] for k in same} == {k: gtn[k] for k in same}
    data = json.loads((out / "report.json").read_text())
    assert data["vanilla_teacher"]["test_top1"] > 35
    for b, device in zip(run.branches, data["devices"]):
        summary = json.loads((b.vanilla.path / "summary.json").read_text())
        assert summary["teacher"]["method"] == "vanilla" and summary["init"] == "supernet"
        assert device["vanilla_top1"] == summary["metrics"]["test_top1"]
        assert device["gtn_gain"] == pytest.approx(
            device["student_test_top1"] - device["vanilla_top1"], abs=1e-3)
    report = (out / "report.md").read_text()
    assert "KD from vanilla teacher %" in report and "GTN teacher against a vanilla" in report
