"""``gtnd teacher train``: GTN, SFTN or vanilla teacher training (torch imported inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.choices import (BRANCHES, METHODS, SAMPLERS, WORK_TASK, choice, space_option,
                                    resolve_torch_device, task_option, torch_device_options)
from gtn_deploy.cli.common import user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.constants import DEFAULT_FAMILY

app = typer.Typer(help="Train teachers (gtn | sftn | vanilla).", no_args_is_help=True,
                  add_completion=False)

@app.command("train")
@user_errors
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoints, metrics, models).")],
    method: Annotated[str, choice(METHODS, "Teacher training.", label="METHOD")] = "gtn",
    task: Annotated[str, task_option("Task to train on.")] = WORK_TASK,
    space: Annotated[str, space_option("Supernet family.")] = DEFAULT_FAMILY,
    teacher: Annotated[str, typer.Option(help="Teacher network (resnet20, wrn_16_2, ...).")]
    = "resnet20",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 1,
    sampler: Annotated[str, choice(SAMPLERS, "GTN path sampler.", label="SAMPLER")] = "learned",
    paths: Annotated[int, typer.Option(help="Paths sampled per step (m).")] = 1,
    branches: Annotated[str, choice(
        BRANCHES, "Branches per path and step: one (drawn uniformly: an unbiased estimate of "
                  "their mean, cheaper) or all.")] = "one",
    branch0: Annotated[bool, typer.Option(
        help="Include branch 0, the full student from the image.")] = True,
    branch_batch: Annotated[float, typer.Option(
        help="Share of each batch the branches see (an unbiased estimate; cheaper).")] = 0.5,
    pool: Annotated[Optional[Path], typer.Option(
        help="plan.json whose candidates form the student pool (sampler prior / 'pool').")]
    = None,
    student: Annotated[Optional[str], typer.Option(
        help="sftn's student: plan.json:K, the K-th candidate (0-based) over all devices "
             "in order.")] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 128,
    micro_batches: Annotated[int, typer.Option(
        help="Run each batch in K pieces, accumulating gradients (less memory).")] = 1,
    lr: Annotated[float, typer.Option(help="Peak SGD learning rate (cosine decay).")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of weights, data order and sampling.")] = 0,
    limit_train: Annotated[Optional[int], typer.Option(
        help="Train on a stratified subset of N images.")] = None,
    limit_val: Annotated[Optional[int], typer.Option(
        help="Validate on a stratified subset of N images.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset folder override.")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        help="Also checkpoint every N steps (0: only each epoch).")] = 0,
    l_kl: Annotated[float, typer.Option(help="Weight of the branch KL term.")] = 3.0,
    tau: Annotated[float, typer.Option(help="Temperature of the branch KL term.")] = 1.0,
    kl_detach: Annotated[bool, typer.Option(
        help="The branch KL does not pull on the teacher's logits (the default: it made "
             "the teacher soft and weak).")] = True,
    teacher_grad: Annotated[float, typer.Option(
        help="Scale of the branch gradients reaching the teacher's features (1: the "
             "written design).")] = 0.1,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start the teacher from a finished teacher run (DIR of 'gtnd teacher train'): "
             "the two-phase GTN fine-tunes a normally trained teacher.")] = None,
    supernet_init: Annotated[Optional[Path], typer.Option(
        help="Start the student branches from this supernet folder (DIR of 'gtnd supernet "
             "import', e.g. Once-for-All's published weights) instead of fresh weights; "
             "its space must be this run's --space and --task.")] = None,
    cond_start_frac: Annotated[float, typer.Option(
        help="Share of training before the branches pull on the teacher (they learn from "
             "it meanwhile); then the pull ramps in over --cond-ramp-frac.")] = 0.0,
    cond_ramp_frac: Annotated[float, typer.Option(
        help="Share of training over which the branch terms ramp in from 0.")] = 0.3,
    gamma: Annotated[float, typer.Option(
        help="Pull of the learned sampler toward the --pool students.")] = 0.1,
    torch_device: Annotated[str, torch_device_options()[0]] = "auto",
    device: Annotated[Optional[str], torch_device_options()[1]] = None,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No crop/flip.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Print the result as one JSON document ({out_dir, method, val_top1, test_top1, "
        "..., train_time_s}) instead of a summary line."))] = False,
) -> None:
    """Train a teacher; write DIR/{config.json, metrics.jsonl, teacher/, supernet/, ...}."""
    # lazy: CLI start-up
    from gtn_deploy.train.config import TrainConfig, read_plan, read_student, unique
    from gtn_deploy.train.trainer import TeacherTrainer  # lazy: CLI start-up

    pool_archs = unique(read_plan(pool, task, space)) if pool else []
    student_arch = read_student(student, task, space) if student else None
    cfg = TrainConfig(
        method=method, task=task, space=space, teacher=teacher, epochs=epochs, sampler=sampler,
        paths=paths, branches=branches, branch0=branch0, branch_batch=branch_batch,
        pool=tuple(a.to_dict() for a in pool_archs),
        student=student_arch.to_dict() if student_arch else None, batch_size=batch_size,
        micro_batches=micro_batches,
        lr=lr, seed=seed, limit_train=limit_train, limit_val=limit_val,
        data_dir=str(data_dir) if data_dir else None, l_kl=l_kl, tau=tau,
        kl_detach=kl_detach, teacher_grad=teacher_grad, gamma=gamma,
        cond_start_frac=cond_start_frac, cond_ramp_frac=cond_ramp_frac,
        init_from=str(init_from) if init_from else None,
        supernet_init=str(supernet_init) if supernet_init else None,
        augment=not no_augment, checkpoint_every=checkpoint_every, progress=progress,
        sources={"pool": str(pool) if pool else None, "student": student})
    trainer = TeacherTrainer(cfg, out, resume=resume,
                             device=resolve_torch_device(torch_device, device))
    try:
        with stdout_to_stderr(as_json):
            summary = trainer.run()
    finally:
        trainer.close()
    if not trainer.info.is_main:
        return
    if as_json:
        print_json({"out_dir": str(out), "method": method, **summary["teacher_metrics"],
                    "train_time_s": summary["train_time_s"]})
    else:
        typer.echo(format_summary(summary, out))


def format_summary(summary: dict, out: Path) -> str:
    """One line: the teacher's accuracy, its supernet's subnets, the time and the folder."""
    m = summary["teacher_metrics"]
    subnets = "".join(f", supernet {name} {v['top1']:.2f}%"
                      for name, v in summary.get("supernet_val", {}).items())
    return (f"{summary['method']} teacher {summary['teacher']} on {summary['task']}: val "
            f"top-1 {m['val_top1']:.2f}%, test top-1 {m['test_top1']:.2f}%{subnets} "
            f"({summary['train_time_s']:.0f} s) -> {out}")
