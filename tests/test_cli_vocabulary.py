"""One vocabulary (issue 13.2): --holdout is a count everywhere, --task defaults by one rule
stated in --help, and bare flags show no type in help."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from gtn_deploy.cli import choices
from gtn_deploy.cli.main import app
from cli_helpers import assert_one_line_error

runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _words(*command: str) -> str:
    """The help as one line of words: rich's wrapping and box borders taken out."""
    return " ".join(_help(*command).replace("│", " ").split())


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    """Every command of the CLI with its argv path, groups included."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


ALL = [path for path, _ in _commands(typer.main.get_command(app))]


# -- --holdout ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, meant", [
    (["predictor", "fit", "--teacher", "t", "--out", "p.json", "--holdout", "0.2"],
     "--holdout 20"),  # a fifth of the default 100 samples
    (["calibrate", "--device", "local", "--samples", "30", "--holdout", "0.5"],
     "--holdout 15"),
])
def test_holdout_is_a_count_and_a_share_is_one_clear_error(argv, meant, tmp_path,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, argv)
    assert_one_line_error(result, "--holdout counts subnets", meant)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["predictor", "fit"], ["calibrate"]])
def test_holdout_help_says_it_is_a_count(command):
    text = _words(*command)
    assert re.search(r"--holdout N Held-out subnets: N ", text), text
    assert "A count, as in" in text


def test_predictor_holdout_defaults_to_a_fifth_of_the_samples(monkeypatch, tmp_path):
    import json
    import random

    import gtn_deploy.train.kd_subnets as kd_subnets
    from gtn_deploy.spaces.mbconv import get_space

    space = get_space("digits")

    def fake_evaluate(teacher, samples, seed, *args, **kwargs):
        archs = [space.sample(random.Random(i)) for i in range(samples)]
        return space, [{"arch": a.to_dict(), "summary": a.summary(), "top1": 50.0 + i}
                       for i, a in enumerate(archs)]

    monkeypatch.setattr(kd_subnets, "evaluate_supernet_subnets", fake_evaluate)
    result = runner.invoke(app, ["predictor", "fit", "--teacher", str(tmp_path), "--out",
                                 str(tmp_path / "p.json"), "--samples", "10", "--json",
                                 "--torch-device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["holdout_n"] == 2
    too_many = runner.invoke(app, ["predictor", "fit", "--teacher", str(tmp_path), "--out",
                                   str(tmp_path / "q.json"), "--samples", "10",
                                   "--holdout", "8"])
    assert_one_line_error(too_many, "--holdout 8 of --samples 10", "fewer than 3")


# -- --task ---------------------------------------------------------------------------------

def _task_default(command: click.Command):
    return next(p.default for p in command.params if p.name == "task")


def test_task_defaults_follow_one_rule():
    from gtn_deploy.bench.calibration import calibrate
    from gtn_deploy.pipeline.config import PipelineConfig

    commands = dict(_commands(typer.main.get_command(app)))
    with_task = {path for path, c in commands.items()
                 if any(p.name == "task" for p in getattr(c, "params", []))}
    assert with_task == {("plan",), ("pipeline",), ("calibrate",), ("teacher", "train")}
    assert _task_default(commands[("plan",)]) == choices.PLAN_TASK == "imagenet"
    for path in (("calibrate",), ("teacher", "train")):
        assert _task_default(commands[path]) == choices.WORK_TASK == "fashion-mnist"
    # pipeline's flag defaults to None so that a run file can set it; the config decides
    assert PipelineConfig.model_fields["task"].default == choices.WORK_TASK
    assert calibrate.__defaults__[0] == choices.WORK_TASK


@pytest.mark.parametrize("command", [["plan"], ["pipeline"], ["calibrate"],
                                     ["teacher", "train"]])
def test_task_help_states_the_default_and_why(command):
    text = _words(*command)
    if command == ["plan"]:
        assert "Default imagenet: profiles set their latency budgets for 224-pixel" in text
        assert "train or measure default to fashion-mnist" in text
    else:
        assert "Default fashion-mnist, as for every command that trains or measures" in text
        assert "Only plan defaults to imagenet" in text


# -- flags show no type ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: " ".join(p) or "gtnd")
def test_bare_flags_show_no_type(path):
    text = _help(*path)
    assert "<bool>" not in text, text
    for flag in ("--help", "--json", "--force", "--quick", "--verbose", "--dry-run"):
        for line in text.splitlines():
            if re.match(rf"^\W*{flag}\b", line):  # the flag's own row
                assert not re.search(r"<\w+>", line), line
