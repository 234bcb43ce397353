"""``gtnd export`` reports its gates: a line per gate on stderr off a terminal, bars with an
ETA on one (inside the pipeline's display too), nothing under ``-q``; stdout stays the result."""

from __future__ import annotations

import json
import re

import pytest
from test_export_helpers import trained_student_dir
from test_progress import plain
from typer.testing import CliRunner

from gtn_deploy import progress
from gtn_deploy.cli.main import app
from gtn_deploy.errors import ExportError
from gtn_deploy.export import bundle as bundle_mod
from gtn_deploy.export.bundle import ExportOptions, export_student
from gtn_deploy.profiles import load_profile

runner = CliRunner()
STEPS = ["data", "onnx", "parity", "fp32 accuracy", "bundle files", "tarball"]


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return trained_student_dir(tmp_path_factory)


def _export(student, out, *flags):
    """The CLI, fp32 only and on 300 test images: a second or two."""
    return runner.invoke(app, [*flags, "export", "--student", str(student), "--device",
                               "x86-laptop", "--out", str(out), "--no-int8", "--eval-images",
                               "300", "--json"])


def test_off_a_terminal_one_line_per_gate_on_stderr_and_json_on_stdout(tmp_path, student):
    result = _export(student, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["manifest"]["metrics"]["eval_images"] == 300
    lines = result.stderr.splitlines()
    assert [re.match(r"export x86-laptop (\d)/6 ([a-z0-9 ]+): ", ln).groups() for ln in lines] \
        == [(str(i), name) for i, name in enumerate(STEPS, 1)], lines
    assert "parity: passed, 256 images" in lines[2] and "top-1" in lines[3]
    assert "\x1b" not in result.stderr and "━" not in result.stderr


def test_quiet_prints_no_progress(tmp_path, student):
    result = _export(student, tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and json.loads(result.stdout)["bundle_path"]


def test_on_a_terminal_bars_for_the_gates_and_their_loops(tmp_path, student, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's switch: stderr counts as a terminal
    result = _export(student, tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["bundle_path"]
    err = plain(result.stderr)
    assert "✓ export x86-laptop 3/6 parity: passed" in err and "━" in err and "eta" in err
    assert re.search(r"  parity: PyTorch, then onnxruntime +━+ +\d+/512", err), err
    assert re.search(r"  fp32 accuracy +━+ +\d+/300", err), err
    assert "export x86-laptop: done" in err and "6/6" in err


def test_a_failed_gate_is_marked_inside_the_pipeline_display(tmp_path, student, monkeypatch,
                                                             capsys):
    def parity_fails(*args, **kwargs):
        raise ExportError("ONNX parity failed")

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setattr(bundle_mod, "parity_gate", parity_fails)
    with progress.StageList(["bundle-x86-laptop"]) as stages:
        stages.running("bundle-x86-laptop")
        with pytest.raises(ExportError):
            export_student(student, load_profile("x86-laptop"), tmp_path,
                           ExportOptions(int8=False, eval_images=300))
        # the export's bars are gone; the pipeline's stage list stays
        assert progress._board.tasks == [] and len(progress._board.stages) == 1
    assert list(tmp_path.iterdir()) == []
    err = plain(capsys.readouterr().err)
    assert "✓ export x86-laptop 2/6 onnx: done" in err
    assert "✗ export x86-laptop 3/6 parity: failed" in err and "bundle-x86-laptop" in err


def test_library_callers_can_turn_it_off(tmp_path, student, capsys):
    export_student(student, load_profile("x86-laptop"), tmp_path,
                   ExportOptions(int8=False, eval_images=300, tarball=False), progress=False)
    assert capsys.readouterr() == ("", "")
