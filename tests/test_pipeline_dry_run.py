"""``gtnd pipeline --dry-run``: the stage plan, cached or to run, with times; it trains, locks
and writes nothing. No test here trains: the training stages are stubbed or only probed."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from gtn_deploy.pipeline import dry_run as dry
from gtn_deploy.pipeline import run as run_mod
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.lock import RunLock

# digits, small batches: the probe behind the estimates takes a few seconds at most
TINY = {"task": "digits", "quick": True, "batch_size": 16, "distill_batch_size": 16,
        "limit_train": 200, "distill_limit_train": 200, "limit_val": 100,
        "eval_images": 256, "int8": False, "bench_iters": 10}
FAKE_ESTIMATE = {"teacher_s": 600.0, "student_run_s": {"local": 60.0, "x86-laptop": 30.0,
                                                       "raspberry-pi-5": 45.0}}


def _listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _run_file(tmp_path, **extra) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**TINY, **extra}))  # JSON is YAML
    return str(path)


def test_cli_dry_run_lists_every_stage_with_estimates_and_writes_nothing(tmp_path):
    config = _run_file(tmp_path, baseline="none")
    out = tmp_path / "run"
    before = _listing(tmp_path)
    result = CliRunner().invoke(app, ["pipeline", "--dry-run", "--devices", "local",
                                      "--config", config, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:-1]}
    assert list(rows) == ["plan-local", "teacher", "student-local", "bundle-local",
                          "bench-local"]
    assert all(" pending " in row for row in rows.values()), rows
    assert "(estimate)" in rows["teacher"] and "(estimate)" in rows["student-local"]
    assert rows["bundle-local"].rstrip().endswith("-")  # not estimated: said in the last line
    assert "nothing is trained or written" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("0 of 5 stages cached, 5 to run; "
                                                     "training about ")
    assert not out.exists() and _listing(tmp_path) == before


def _stub_training(monkeypatch) -> list[str]:
    """The run's training, export and bench stages replaced by stubs that record their call."""
    built = []

    def stub(name):
        def build(*args, **kwargs):
            built.append(name)
            return {"stub": name}
        return build

    for fn in ("_teacher", "_distill", "_export", "_bench"):
        monkeypatch.setattr(run_mod, fn, stub(fn))
    monkeypatch.setattr(run_mod, "write_report", lambda run: None)
    return built


def test_dry_run_agrees_with_the_run_and_takes_no_lock(tmp_path, monkeypatch):
    built = _stub_training(monkeypatch)
    out = tmp_path / "run"
    cfg = load_config(None, {"devices": "local,raspberry-pi-5", **TINY})
    run = run_mod.run_pipeline(cfg, out, log=lambda line: None)
    assert built and run.stages_run
    monkeypatch.setattr(dry, "estimate_training", lambda *a: pytest.fail("probed"))
    before = _listing(out)
    with RunLock(out):  # a run holding the folder does not stop a dry run
        doc = dry.dry_run(cfg, out)
    assert [s["name"] for s in doc["stages"]] == run.stages_run  # same stages, same order
    assert all(s["status"] == "cached" and s["took_s"] is not None for s in doc["stages"])
    assert doc["stages_to_run"] == 0 and doc["estimated_training_s"] is None
    assert {s["folder"] for s in doc["stages"]} == {f"stages/{p.name}" for p in
                                                   (out / "stages").iterdir()}
    assert _listing(out) == before

    # a device added: only its branch is to run; a killed student's work folder shows
    more = load_config(None, {"devices": "local,raspberry-pi-5,x86-laptop", **TINY})
    monkeypatch.setattr(dry, "estimate_training", lambda *a: FAKE_ESTIMATE)
    doc = dry.dry_run(more, out)
    student = next(s for s in doc["stages"] if s["name"] == "student-x86-laptop")
    (out / student["folder"].replace("stages/", "stages/.work-")).mkdir()
    doc = dry.dry_run(more, out)
    todo = {s["name"]: s for s in doc["stages"] if s["status"] != "cached"}
    assert sorted(todo) == ["baseline-x86-laptop", "bundle-x86-laptop", "plan-x86-laptop",
                            "student-x86-laptop"]
    assert todo["student-x86-laptop"]["status"] == "started"
    assert todo["baseline-x86-laptop"]["estimated_s"] == 30.0
    assert doc["estimated_training_s"] == 60.0  # the teacher is cached: not counted
    text = dry.format_dry_run(doc)
    assert "took " in text and "~30 s (estimate)" in text and "started" in text
    assert "4 to run; training about 1 min" in text.splitlines()[-1]


def test_dry_run_json_and_an_estimate_it_cannot_make(tmp_path, monkeypatch):
    from gtn_deploy.errors import GtnError

    def no_data(*args):
        raise GtnError("no digits data here")

    monkeypatch.setattr(dry, "estimate_training", no_data)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["pipeline", "--dry-run", "--json", "--devices", "local",
                                      "--config", _run_file(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dry_run"] is True and doc["stages_cached"] == 0
    assert doc["estimate_note"] == "no estimate: no digits data here"
    assert doc["estimated_training_s"] is None and not out.exists()


def test_bundle_key_holds_the_plans_budget(tmp_path, monkeypatch):
    """The budget a bundle records comes from its plan: a budget that changes nothing else
    (the same student, as when the budget does not bind) still gives a new bundle stage."""
    monkeypatch.setattr(run_mod, "estimate_training", lambda *a: {
        "teacher_s": 1.0, "student_run_s": {"raspberry-pi-5": 1.0}})

    def folders(latency_ms):
        devices = [{"device": "raspberry-pi-5", "latency_ms": latency_ms}]
        cfg = load_config(None, {**TINY, "devices": devices})
        return {s["name"]: s["folder"] for s in dry.dry_run(cfg, tmp_path / "run")["stages"]}

    loose, looser = folders(50.0), folders(60.0)  # the largest digits subnet fits both
    assert loose["student-raspberry-pi-5"] == looser["student-raspberry-pi-5"]
    assert loose["bundle-raspberry-pi-5"] != looser["bundle-raspberry-pi-5"]
