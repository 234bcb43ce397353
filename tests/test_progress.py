"""The shared progress module: bars on a terminal only, plain lines off one, -q silences."""

from __future__ import annotations

import contextlib
import io
import logging
import re

import pytest
from typer.testing import CliRunner

from gtn_deploy import progress
from gtn_deploy.cli.main import app


@pytest.fixture
def terminal(monkeypatch):
    """rich treats the stream as a terminal (TTY_COMPATIBLE is rich's own switch)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")


def _run_steps(bar: progress.StepProgress, steps: int = 6) -> None:
    with bar:
        for step in range(1, steps + 1):
            bar.update(step, 0, 32, loss=1.0 / step, acc=50.0)
        bar.message("epoch 1/1 done")


def test_off_a_terminal_plain_lines_every_n_steps_and_no_bar():
    stream = io.StringIO()
    _run_steps(progress.StepProgress(6, every=3, stream=stream))
    lines = stream.getvalue().splitlines()
    assert [line.split()[3] for line in lines[:2]] == ["3/6", "6/6"], lines
    assert "eta" in lines[0] and lines[-1] == "epoch 1/1 done"
    assert "\x1b" not in stream.getvalue() and "━" not in stream.getvalue()


def test_on_a_terminal_a_bar_with_eta_that_goes_away(terminal):
    stream = io.StringIO()
    bar = progress.StepProgress(6, stream=stream, description="teacher")
    assert bar.live
    _run_steps(bar)
    out = stream.getvalue()
    assert "teacher" in out and "6/6" in out and "eta" in out and "━" in out
    assert "epoch 1/1 done" in out


def test_a_failing_loop_stops_the_display(terminal):
    with pytest.raises(RuntimeError):
        with progress.StepProgress(10, stream=io.StringIO()) as bar:
            bar.update(1, 0, 32, loss=1.0)
            raise RuntimeError("boom")
    # restore_progress_logger (conftest, every test) checks that no live display is left


def test_disabled_or_quiet_prints_nothing(terminal):
    stream = io.StringIO()
    _run_steps(progress.StepProgress(6, enabled=False, every=1, stream=stream))
    progress.setup_logging(-1)
    _run_steps(progress.StepProgress(6, every=1, stream=stream))
    assert stream.getvalue() == "" and progress.quiet()


def test_stage_list_is_live_on_a_terminal_only(terminal, monkeypatch):
    with progress.StageList(["plan-a", "teacher"]) as stages:
        assert stages.live
        stages.finished("plan-a", "cached")
        stages.running("teacher")
        assert progress._board.stages[1].status == "running"
        stages.finished("teacher", "done", 1.5)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    with progress.StageList(["plan-a"]) as stages:
        assert not stages.live and progress._board is None
        stages.running("plan-a")  # accepted, nothing drawn


def test_global_quiet_and_verbose_flags(tmp_path):
    runner = CliRunner()
    quiet = runner.invoke(app, ["-q", "plan", "--device", "rpi4", "--task", "fashion-mnist",
                                "--top-k", "1"])
    assert quiet.exit_code == 0, quiet.output
    assert logging.getLogger(progress.LOGGER).level == logging.WARNING
    verbose = runner.invoke(app, ["-vv", "profiles", "list"])
    assert verbose.exit_code == 0, verbose.output
    assert logging.getLogger(progress.LOGGER).level == logging.DEBUG
    assert "--quiet" in runner.invoke(app, ["-h"]).output


def test_teacher_training_keeps_its_progress_flag(capsys, tmp_path):
    """TrainConfig.progress: plain lines on stderr when on (not a terminal), none when off."""
    torch = pytest.importorskip("torch")
    from gtn_deploy.train.config import TrainConfig
    from gtn_deploy.train.trainer import TeacherTrainer

    torch.manual_seed(0)
    for on in (True, False):
        cfg = TrainConfig(method="vanilla", task="digits", epochs=1, batch_size=32,
                          limit_train=64, limit_val=32, augment=False, progress=on, log_every=1)
        TeacherTrainer(cfg, tmp_path / str(on), device="cpu").run()
        err = capsys.readouterr().err
        assert ("step 2/2" in err and "epoch 1/1" in err) is on, err


def test_a_student_bar_is_named_by_its_device_not_its_work_folder(tmp_path):
    pytest.importorskip("torch")
    from gtn_deploy.spaces.mbconv import get_space
    from gtn_deploy.train.distill import KDConfig, StudentDistiller

    space = get_space("digits")
    cfg = KDConfig(task="digits", epochs=1, batch_size=32, limit_train=64, limit_val=32,
                   progress=False)
    ce = StudentDistiller(cfg, space.min_arch(), tmp_path / ".work-student-x-123",
                          label={"device": "rpi5"})
    assert ce._progress_name() == "ce baseline rpi5"


@pytest.mark.parametrize("tty", ["1", "0"])
def test_pipeline_stages_drive_the_stage_list(tty, monkeypatch, tmp_path):
    """On a terminal the list replaces the stage log lines; off one the lines stay."""
    from types import SimpleNamespace

    from gtn_deploy.pipeline import run as run_mod
    from gtn_deploy.pipeline.stages import StageStore

    monkeypatch.setenv("TTY_COMPATIBLE", tty)
    lines, store = [], StageStore(tmp_path)

    def broken(folder):
        raise RuntimeError("boom")

    with progress.StageList(["a", "b"]) as stages:
        run = SimpleNamespace(stages=stages, log=lines.append, stages_run=[])
        run_mod._stage(run, store, "a", {"x": 1}, lambda folder: {"n": 1})
        assert stages.stages["a"].status == "done" and stages.stages["a"].seconds is not None
        run_mod._stage(run, store, "a", {"x": 1}, lambda folder: {"n": 1})
        assert stages.stages["a"].status == "cached"
        with pytest.raises(RuntimeError):
            run_mod._stage(run, store, "b", {"x": 1}, broken)
        assert stages.stages["b"].status == "failed" and run.stages_run == ["a"]
    assert stages.live is (tty == "1")
    assert (lines == []) is stages.live, lines


def plain(text: str) -> str:
    """A terminal's output without its colour and cursor codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def _run_job(steps: progress.Steps, fail: bool = False) -> None:
    with steps:
        with steps.step("onnx") as step:
            step.note = "43 nodes"
        with steps.step("accuracy") as step:
            with steps.bar("accuracy", 300) as advance:
                for _ in range(3):
                    advance(100)
            step.status = "passed"
        with steps.step("gate"):
            if fail:
                raise RuntimeError("gate failed")


def test_steps_off_a_terminal_print_one_line_per_step():
    stream = io.StringIO()
    _run_job(progress.Steps("export x", ["onnx", "accuracy", "gate"], stream=stream))
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" (", 1)[0] for line in lines] == [
        "export x 1/3 onnx: done, 43 nodes", "export x 2/3 accuracy: passed",
        "export x 3/3 gate: done"], lines
    assert "\x1b" not in stream.getvalue() and "━" not in stream.getvalue()
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        _run_job(progress.Steps("export x", ["onnx"], stream=stream), fail=True)
    assert stream.getvalue().splitlines()[-1].startswith("export x 3/3 gate: failed (")


def test_steps_quiet_disabled_or_not_entered_print_nothing(terminal):
    stream = io.StringIO()
    _run_job(progress.Steps("export x", stream=stream, enabled=False))
    steps = progress.Steps("export x", stream=stream)  # a library caller's default: silent
    with steps.step("onnx"), steps.bar("loop", 10) as advance:
        advance(10)
    progress.setup_logging(-1)
    _run_job(progress.Steps("export x", stream=stream))
    assert stream.getvalue() == ""


@pytest.mark.parametrize("fail", [False, True])
def test_steps_on_a_terminal_draw_bars_and_mark_each_step(terminal, fail):
    stream = io.StringIO()
    steps = progress.Steps("export x", ["onnx", "accuracy", "gate"], stream=stream)
    assert steps.live
    with contextlib.suppress(RuntimeError):
        _run_job(steps, fail=fail)
    out = plain(stream.getvalue())
    assert "✓ export x 1/3 onnx: done, 43 nodes" in out and "━" in out and "eta" in out
    assert re.search(r"  accuracy +━+ +0/300", out), out  # the loop's own bar
    end = "✗ export x 3/3 gate: failed" if fail else "✓ export x 3/3 gate: done"
    assert end in out
    assert ("export x: failed at gate" if fail else "export x: done") in out


def test_steps_inside_the_stage_list_leave_it_alone(terminal):
    stream = io.StringIO()
    with progress.StageList(["bundle-x"], stream=stream) as stages:
        stages.running("bundle-x")
        with pytest.raises(RuntimeError):
            _run_job(progress.Steps("export x", ["onnx", "accuracy", "gate"]), fail=True)
        board = progress._board
        assert board is not None and board.tasks == [] and board.stages[0].name == "bundle-x"
        stages.finished("bundle-x", "failed")
    assert "✗ export x 3/3 gate: failed" in plain(stream.getvalue())
