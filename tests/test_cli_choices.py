"""Choices: help lists them, completion offers them, a bad one is still one error line;
--torch-device is where training runs, --device its hidden old name there."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from gtn_deploy.cli import choices
from gtn_deploy.cli.main import app
from cli_helpers import assert_one_line_error

runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_choice_tuples_match_the_library():
    from gtn_deploy.arch import TASKS
    from gtn_deploy.bench.runners import BACKENDS

    assert choices.TASKS == tuple(TASKS)
    from gtn_deploy.spaces import FAMILIES

    assert choices.FAMILIES == tuple(FAMILIES)
    assert choices.BACKENDS == BACKENDS
    from gtn_deploy.bench.calibration_runtime import OVERRIDES

    assert choices.RUNTIME_OVERRIDES == OVERRIDES
    pytest.importorskip("torch")
    from gtn_deploy.train.config import BRANCH_MODES
    from gtn_deploy.train.distill import INITS
    from gtn_deploy.train.distributed import TORCH_DEVICES
    from gtn_deploy.train.gtn import METHODS
    from gtn_deploy.train.losses import KD_LOSSES
    from gtn_deploy.train.sampler import SAMPLER_MODES

    assert choices.METHODS == METHODS and choices.BRANCHES == BRANCH_MODES
    assert choices.SAMPLERS == tuple(m for m in SAMPLER_MODES if m != "fixed")  # sftn's own
    assert choices.INITS == INITS and choices.KD_LOSSES == tuple(KD_LOSSES)
    assert choices.TORCH_DEVICES == TORCH_DEVICES


@pytest.mark.parametrize("command, listed", [
    (["plan"], ["fashion-mnist, digits, cifar10, cifar100, imagenet", "[fp32|fp16|int8]"]),
    (["teacher", "train"], ["gtn, vanilla, sftn", "uniform, sandwich, learned, pool",
                            "[auto|cpu|cuda]", "[one|all]"]),
    (["distill"], ["scratch, supernet", "[kd|dkd]", "[auto|cpu|cuda]"]),
    (["predictor", "fit"], ["[auto|cpu|cuda]"]),
    (["pipeline"], ["uniform, sandwich, learned, pool", "ce, vanilla, none", "[kd|dkd]"]),
    (["bench"], ["onnxruntime, tensorrt, openvino, torch", "[fp32|fp16|int8]"]),
    (["calibrate"], ["onnxruntime-cpu, openvino.", "[fp32|fp16|int8]", "imagenet"]),
])
def test_help_lists_the_choices(command, listed):
    text = " ".join(_help(*command).split())  # rich wraps; compare with single spaces
    for choice in listed:
        assert choice in text, (choice, text)


@pytest.mark.parametrize("command", [["teacher", "train"], ["distill"], ["predictor", "fit"]])
def test_training_commands_show_torch_device_and_hide_the_old_device(command):
    text = _help(*command)
    assert "--torch-device" in text
    assert not re.search(r"^\W*--device\b", text, re.M), text  # no --device row of its own


def test_completion_offers_the_choices():
    complete = choices.choice(choices.METHODS, "x").autocompletion
    assert complete("") == ["gtn", "vanilla", "sftn"] and complete("s") == ["sftn"]


@pytest.mark.parametrize("flag", ["--torch-device", "--device"])
def test_torch_device_and_its_alias_reach_the_trainer(flag, tmp_path):
    pytest.importorskip("torch")
    result = runner.invoke(app, ["predictor", "fit", "--teacher", str(tmp_path / "t"),
                                 "--out", str(tmp_path / "p.json"), flag, "tpu"])
    assert_one_line_error(result, "--torch-device tpu: not a device", "auto, cpu, cuda")


def test_a_bad_choice_is_still_one_error_line(tmp_path):
    result = runner.invoke(app, ["plan", "--device", "rpi4", "--task", "mnist"])
    assert_one_line_error(result, "unknown task 'mnist'; valid tasks")
