"""A damaged training checkpoint never resumes silently; resume never pads metrics.jsonl."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from gtn_deploy.cli.main import app
from gtn_deploy.errors import CheckpointError
from gtn_deploy.train import checkpoint as ckpt
from gtn_deploy.train.metrics import MetricsLog

ARGS = ["teacher", "train", "--method", "vanilla", "--task", "digits", "--epochs", "1",
        "--batch-size", "16", "--limit-train", "64", "--limit-val", "32", "--no-progress",
        "--device", "cpu"]


def test_flipped_bytes_are_caught_and_nothing_is_overwritten(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, {"config": "{}", "model": {"w": torch.arange(4096.0)}})
    assert ckpt.load_checkpoint(path)["model"]["w"][7] == 7.0
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        ckpt.load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.load_checkpoint(path)


def test_resume_from_a_damaged_checkpoint_is_one_error_line(tmp_path):
    out = tmp_path / "run"
    first = CliRunner().invoke(app, [*ARGS, "--out", str(out)])
    assert first.exit_code == 0, first.output
    last = out / ckpt.CHECKPOINT_NAME
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x01
    last.write_bytes(bytes(data))
    before = last.read_bytes()
    result = CliRunner().invoke(app, [*ARGS, "--out", str(out), "--resume"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(last) in lines[0]
    assert last.read_bytes() == before


def test_resume_never_pads_the_metrics_log(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.write({"event": "step", "step": 1})
    size = log.size()
    log.truncate(size + 1028)  # the checkpoint expected more than the file holds
    assert log.size() == size and b"\0" not in (tmp_path / "metrics.jsonl").read_bytes()
    log.truncate(3)
    assert log.size() == 3


@pytest.mark.parametrize("flag, value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--tau", "0"), ("--tau", "nan"), ("--l-kl", "-1"),
    ("--gamma", "inf"), ("--branch-batch", "0"), ("--branch-batch", "1.5"),
    ("--seed", str(2**64)), ("--checkpoint-every", "-1")])
def test_bad_numbers_are_one_error_line_before_anything_is_written(tmp_path, flag, value):
    out = tmp_path / "run"
    args = [a for a in ARGS] + ["--method", "gtn", "--out", str(out), flag, value]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "error:" in result.output and flag in result.output
    assert not out.exists()
