"""Trust boundaries (issue 25): names, links, devices, data and run folders.

Each case is a bad input or fault as a user gives it (real files, real links, a real
tarball, a stand-in ``ssh`` on PATH for a device's answers): a non-zero exit, exactly one
``error:`` line, no traceback, and nothing outside the named folders touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli.main import app

FIXTURES = Path(__file__).parent / "fixtures"


def _listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders and links)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not
                                             p.is_symlink() else None)
            for p in sorted(root.rglob("*"))}


def assert_one_error(result, *needles: str) -> str:
    """Non-zero exit, no traceback, no escaped exception, exactly one ``error:`` line."""
    output = result.output
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _invoke(argv: list[str]):
    return CliRunner().invoke(app, [str(a) for a in argv])


# -- 1: export --name is one path component; --overwrite replaces only a bundle --------------

def _export(tmp: Path, *extra) -> list:
    return ["export", "--student", tmp / "student", "--device", "local", "--out",
            tmp / "out", *extra]


def test_export_name_must_be_one_path_component(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine\n")
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data.txt").write_text("not a bundle\n")
    before = _listing(tmp_path)
    for name in ("../victim", "../../x", str(tmp_path / "abs"), ".", "..", "a/b", ".hidden"):
        result = _invoke(_export(tmp_path, "--name", name, "--overwrite"))
        assert_one_error(result, "not a plain folder name")
        assert _listing(tmp_path) == before, name


def test_export_overwrite_replaces_only_a_bundle(tmp_path):
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    (out / "mine" / "data.txt").write_text("not a bundle\n")
    (out / "afile").write_text("a file\n")
    os.symlink(tmp_path / "elsewhere", out / "link")
    before = _listing(tmp_path)
    assert_one_error(_invoke(_export(tmp_path, "--name", "mine", "--overwrite")),
                     "is not a bundle", "--overwrite replaces only bundles")
    assert_one_error(_invoke(_export(tmp_path, "--name", "afile", "--overwrite")),
                     "is not a bundle folder")
    assert_one_error(_invoke(_export(tmp_path, "--name", "link", "--overwrite")),
                     "is not a bundle folder")
    assert _listing(tmp_path) == before


# -- 2: files written in place in a run folder refuse links ---------------------------------

def test_pipeline_lock_that_is_a_symlink_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(outside, run / ".lock")
    result = _invoke(["pipeline", "--devices", "local", "--task", "digits", "--out", run])
    assert_one_error(result, ".lock is a symbolic link")
    assert outside.read_text() == "keep me\n"
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_pipeline_lock_that_is_a_hard_link_or_fifo_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    run, fifo_run = tmp_path / "run", tmp_path / "fifo-run"
    run.mkdir()
    fifo_run.mkdir()
    os.link(outside, run / ".lock")
    os.mkfifo(fifo_run / ".lock")
    assert_one_error(_invoke(["pipeline", "--devices", "local", "--task", "digits", "--out",
                              run]), "hard link")
    assert_one_error(_invoke(["pipeline", "--devices", "local", "--task", "digits", "--out",
                              fifo_run]), "not a regular file")
    assert outside.read_text() == "keep me\n"


def test_metrics_log_append_and_resume_refuse_a_link(tmp_path):
    from gtn_deploy.errors import PathError
    from gtn_deploy.train.metrics import MetricsLog

    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    os.symlink(outside, tmp_path / "metrics.jsonl")
    log = MetricsLog(tmp_path / "metrics.jsonl")
    with pytest.raises(PathError, match="symbolic link"):
        log.truncate(0)  # what a resume does first
    with pytest.raises(PathError, match="symbolic link"):
        log.write({"epoch": 1})
    assert outside.read_text() == "keep me\n"
