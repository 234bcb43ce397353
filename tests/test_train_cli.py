"""``gtnd teacher train`` through the CLI: tiny real runs and every bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtn_deploy.spaces.mbconv import get_space
from gtn_deploy.cli.main import app
from cli_helpers import assert_one_line_error

SPACE = get_space("digits")


TINY = ["--task", "digits", "--epochs", "1", "--batch-size", "32", "--limit-train", "64",
        "--limit-val", "64", "--paths", "1", "--no-progress", "--device", "cpu"]


def _plan(path: Path, task: str = "digits", n: int = 3) -> Path:
    archs = [SPACE.sample(random.Random(i)) for i in range(n)]
    doc = {"schema_version": 1, "kind": "gtn_deploy.plan", "task": task,
           "space": task, "devices": [
               {"device": "dev-a", "candidates": [{"arch": a.to_dict(), "latency_ms": 1.0}
                                                  for a in archs[:2]]},
               {"device": "dev-b", "candidates": [{"arch": archs[2].to_dict()}]}]}
    path.write_text(json.dumps(doc))
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["teacher", "train", *args])


@pytest.mark.parametrize("flag,value,needle", [
    ("--method", "kd", "valid methods: gtn, vanilla, sftn"),
    ("--teacher", "vgg99", "valid teachers: resnet20"),
    ("--task", "mnist-9000", "valid tasks:"),
    ("--sampler", "greedy", "valid samplers: uniform"),
])
def test_unknown_names_list_valid_choices(tmp_path, flag, value, needle):
    args = ["--out", str(tmp_path / "run"), *TINY]
    i = args.index(flag) if flag in args else None
    if i is None:
        args += [flag, value]
    else:
        args[i + 1] = value
    assert_one_line_error(_run(*args), needle)
    assert not (tmp_path / "run").exists()


def test_sftn_needs_a_student(tmp_path):
    assert_one_line_error(_run("--method", "sftn", "--out", str(tmp_path / "r"), *TINY), "--student")


def test_plan_of_another_task(tmp_path):
    plan = _plan(tmp_path / "plan.json", task="fashion-mnist")
    assert_one_line_error(_run("--method", "sftn", "--student", f"{plan}:0", "--out",
                         str(tmp_path / "r"), *TINY), "task 'fashion-mnist'", "'digits'")
    assert_one_line_error(_run("--pool", str(plan), "--out", str(tmp_path / "r"), *TINY),
                    "task 'fashion-mnist'")


def test_student_only_for_sftn_and_broken_plan(tmp_path):
    plan = _plan(tmp_path / "plan.json")
    assert_one_line_error(_run("--student", f"{plan}:0", "--out", str(tmp_path / "r"), *TINY),
                    "--student is for --method sftn")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_one_line_error(_run("--pool", str(broken), "--out", str(tmp_path / "r"), *TINY),
                    "not valid JSON")
    assert not (tmp_path / "r").exists()


def test_student_index_out_of_range(tmp_path):
    plan = _plan(tmp_path / "plan.json")
    assert_one_line_error(_run("--method", "sftn", "--student", f"{plan}:7", "--out",
                         str(tmp_path / "r"), *TINY), "valid K: 0..2")


def test_corrupt_checkpoint_on_resume_overwrites_nothing(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "last.pt").write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    (run / "metrics.jsonl").write_text('{"event": "step"}\n')
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert_one_line_error(_run("--out", str(run), "--resume", *TINY), "corrupt", "last.pt")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_gtn_run_writes_everything_and_refuses_to_overwrite(tmp_path):
    from gtn_deploy.models import load_teacher
    from gtn_deploy.supernet import load_supernet

    plan, run = _plan(tmp_path / "plan.json"), tmp_path / "run"
    result = _run("--pool", str(plan), "--sampler", "learned", "--out", str(run), *TINY,
                  "--json")
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["out_dir"] == str(run) and final["method"] == "gtn"
    assert 0.0 <= final["val_top1"] <= 100.0
    for name in ("config.json", "metrics.jsonl", "sampler.json", "summary.json",
                 "checkpoint/last.pt"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["method"] == "gtn" and len(config["config"]["pool"]) == 3
    assert config["branches"] == [{"teacher_stage": 0, "supernet_stage": 1},
                                  {"teacher_stage": 1, "supernet_stage": 2}]
    events = [json.loads(ln)["event"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[-2:] == ["epoch", "final"] and "step" in events
    sampler = json.loads((run / "sampler.json").read_text())
    assert sampler["mode"] == "learned" and sampler["updates"] == 2
    teacher, doc = load_teacher(run / "teacher")
    assert doc["name"] == "resnet20" and doc["metrics"]["val_top1"] == final["val_top1"]
    supernet, _ = load_supernet(run / "supernet")
    assert supernet.space.name == "digits"
    again = _run("--out", str(run), *TINY)
    assert_one_line_error(again, "already holds a training run", "--resume")


def test_sftn_run_trains_branches_of_its_student(tmp_path):
    plan, run = _plan(tmp_path / "plan.json"), tmp_path / "run"
    result = _run("--method", "sftn", "--student", f"{plan}:2", "--out", str(run), *TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "summary.json").read_text())
    student = json.loads(plan.read_text())["devices"][1]["candidates"][0]["arch"]
    assert json.loads((run / "config.json").read_text())["config"]["student"] == student
    assert list(summary["supernet_val"]) == ["student"]
    assert json.loads((run / "sampler.json").read_text())["mode"] == "fixed"


def test_two_phases_start_from_a_finished_teacher_and_refuse_another_network(tmp_path):
    """--init-from: the conditioning run starts from the first run's teacher weights (its
    config records their sha256); a teacher of another network or nothing at all is one line."""
    from gtn_deploy.models import load_teacher

    base, cond = tmp_path / "base", tmp_path / "cond"
    assert _run("--method", "vanilla", "--out", str(base), *TINY).exit_code == 0
    result = _run("--init-from", str(base), "--no-kl-detach", "--teacher-grad", "1",
                  "--cond-start-frac", "0.5", "--out", str(cond), *TINY)
    assert result.exit_code == 0, result.output
    config = json.loads((cond / "config.json").read_text())
    _, doc = load_teacher(base / "teacher")
    assert config["init_teacher_sha256"] == doc["weights"]["sha256"]
    assert config["config"]["init_from"] == str(base)
    assert_one_line_error(_run("--init-from", str(tmp_path / "nothing"), "--out",
                               str(tmp_path / "x"), *TINY), "does not exist")
    assert_one_line_error(_run("--init-from", str(base), "--teacher", "wrn_16_2", "--out",
                               str(tmp_path / "y"), *TINY), "holds a resnet20 teacher")
    assert_one_line_error(_run("--cond-start-frac", "1", "--out", str(tmp_path / "z"), *TINY),
                          "--cond-start-frac must be below 1")
