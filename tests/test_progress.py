"""The shared progress module: bars on a terminal only, plain lines off one, -q silences."""

from __future__ import annotations

import io
import logging

import pytest
from typer.testing import CliRunner

from gtn_deploy import progress
from gtn_deploy.cli.main import app


@pytest.fixture(autouse=True)
def _restore_logger():
    logger = logging.getLogger(progress.LOGGER)
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate
    assert progress._board is None, "the live display was left running"


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
    # _restore_logger checks that no live display is left


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
    from gtn_deploy.arch import get_space
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
