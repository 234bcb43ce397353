"""``gtnd pipeline``: plan every device, one GTN teacher, a student and a bundle per device."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.choices import BASELINES, KD_LOSSES, SAMPLERS, choice, space_option, task_option
from gtn_deploy.cli.common import user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.pipeline.config import load_config
from gtn_deploy.pipeline.dry_run import dry_run as plan_stages, format_dry_run
from gtn_deploy.pipeline.report_tables import terminal_summary
from gtn_deploy.pipeline.run import run_pipeline

DEFAULT_DEVICES = "jetson-orin-nano,raspberry-pi-5,local"


@user_errors
def pipeline(
    out: Annotated[Path, typer.Option(help="Run folder; rerun the same command to resume.")] = Path("runs/demo"),
    devices: Annotated[Optional[str], typer.Option(help=f"Comma-separated devices (ids, aliases, YAML files); default: {DEFAULT_DEVICES}.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML run file with the same settings (flags win).")] = None,
    task: Annotated[Optional[str], task_option("Task of every stage.")] = None,
    space: Annotated[Optional[str], space_option("Supernet family of every stage (default mbconv).")] = None,
    quick: Annotated[Optional[bool], typer.Option("--quick/--full", help="Minutes on a laptop CPU vs the full setting.")] = None,
    teacher: Annotated[Optional[str], typer.Option(help="Teacher network (default resnet20).")] = None,
    teacher_epochs: Annotated[Optional[int], typer.Option(help="GTN teacher epochs.")] = None,
    distill_epochs: Annotated[Optional[int], typer.Option(help="KD epochs per student.")] = None,
    sampler: Annotated[Optional[str], choice(SAMPLERS, "GTN sampler (default learned: the planned pool as a prior).", label="SAMPLER")] = None,
    limit_train: Annotated[Optional[int], typer.Option(help="The GTN teacher trains on a stratified subset of N images. The students' own limit is distill_limit_train in a run file (--quick: 24000; --full: every image).")] = None,
    int8: Annotated[Optional[bool], typer.Option("--int8/--no-int8", help="INT8 bundles; default: where the profile lists int8.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every stage.")] = None,
    baseline: Annotated[Optional[str], choice(BASELINES, "What each KD student is set against, a comma list: ce (default), the student trained with plain CE (what KD adds); vanilla, the student distilled from a vanilla teacher of the same network and epochs (what the generic teacher adds); none.", label="LIST")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="KD weight of the teacher term (default 0.9; 1-alpha: CE). torchdistill's alpha weights CE instead (our 0.9 = its 0.1), and its alpha 0 drops T^2; ours keeps it.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="KD temperature (default 4).")] = None,
    kd_loss: Annotated[Optional[str], choice(KD_LOSSES, "KD loss: kd (default) or dkd (Decoupled KD).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset folder override.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the stage plan (each stage cached, started or pending, with recorded or estimated times) and stop: nothing is trained, locked or written. Estimates come from a few timed steps here.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document ({out_dir, report_md_path, report_html_path, stages_run, report}; with --dry-run {out_dir, stages, estimated_training_s, ...}).")] = False,
) -> None:
    """Run (or resume) plan -> GTN teacher -> distil -> export -> bench -> report."""
    overrides = {"devices": devices, "task": task, "quick": quick, "teacher": teacher,
                 "teacher_epochs": teacher_epochs, "distill_epochs": distill_epochs,
                 "sampler": sampler, "limit_train": limit_train, "int8": int8, "seed": seed,
                 "baseline": baseline, "alpha": alpha, "temperature": temperature,
                 "kd_loss": kd_loss, "space": space,
                 "data_dir": str(data_dir) if data_dir else None}
    if config is None and devices is None:
        overrides["devices"] = DEFAULT_DEVICES
    cfg = load_config(config, overrides)
    if dry_run:
        with stdout_to_stderr(as_json):
            doc = plan_stages(cfg, out)
        if as_json:
            print_json(doc)
        else:
            typer.echo(format_dry_run(doc))
        return

    with stdout_to_stderr(as_json):
        run = run_pipeline(cfg, out, log=logging.getLogger("gtn_deploy.pipeline").info)
    data = json.loads((out / "report.json").read_text())
    if as_json:
        print_json({"out_dir": str(out), "report_md_path": str(out / "report.md"),
                    "report_html_path": str(out / "report.html"),
                    "stages_run": run.stages_run, "report": data})
        return
    typer.echo(terminal_summary(data))
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'}")
