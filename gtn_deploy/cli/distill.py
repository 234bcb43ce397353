"""``gtnd distill``: KD of planned students from a frozen teacher (torch imported inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.choices import (INITS, KD_LOSSES, choice, resolve_torch_device,
                                    torch_device_options)
from gtn_deploy.cli.common import user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.errors import UsageError


@user_errors
def distill(
    plan: Annotated[Path, typer.Option("--plan", help="plan.json from 'gtnd plan'.")],
    teacher: Annotated[str, typer.Option(
        "--teacher", help="Teacher run folder from 'gtnd teacher train', or 'none' for the "
                          "CE-only baseline.")],
    out: Annotated[Path, typer.Option("--out", help="Folder; each student goes to OUT/c<K>/.")],
    candidate: Annotated[str, typer.Option(
        help="'all' or K (comma-separated for several): the K-th candidate (0-based) over "
             "all devices of the plan in order, as in plan.json:K.")] = "all",
    epochs: Annotated[int, typer.Option(help="Training epochs per student.")] = 1,
    init: Annotated[str, choice(
        INITS, "scratch (as in the paper) or supernet (the teacher's trained supernet).",
        label="INIT")]
    = "scratch",
    temperature: Annotated[float, typer.Option(help="KD temperature T.")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of the KD term (1-alpha: CE). torchdistill's alpha weights CE instead (our 0.9 = its 0.1), and its alpha 0 drops T^2; ours keeps it.")] = 0.9,
    kd_loss: Annotated[str, choice(
        KD_LOSSES, "KD loss: kd (Hinton et al.) or dkd (Decoupled KD, Zhao et al. 2022).")]
    = "kd",
    dkd_beta: Annotated[float, typer.Option(help="DKD's non-target weight beta.")] = 8.0,
    seed: Annotated[int, typer.Option(help="Seed of weights and data order.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak SGD learning rate (cosine decay).")] = 0.05,
    limit_train: Annotated[Optional[int], typer.Option(
        help="Train on a stratified subset of N images.")] = None,
    limit_val: Annotated[Optional[int], typer.Option(
        help="Validate on a stratified subset of N images.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset folder override.")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        help="Also checkpoint every N steps (0: only each epoch).")] = 0,
    calib_images: Annotated[int, typer.Option(
        help="Training images for BN recalibration.")] = 2000,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="No crop/flip.")] = False,
    torch_device: Annotated[str, torch_device_options()[0]] = "auto",
    device: Annotated[Optional[str], torch_device_options()[1]] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the students in --out; finished ones are kept.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Print the result as one JSON document ({out_dir, students: [{id, out_dir, arch, "
        "method, val_top1, test_top1, train_time_s}]}) instead of a line per student."))]
    = False,
) -> None:
    """Distil each chosen candidate: OUT/c<K>/{student.json, weights.safetensors, ...}."""
    from gtn_deploy.train.distill import KDConfig  # lazy: CLI start-up
    from gtn_deploy.train.kd_run import distill_plan  # lazy: CLI start-up

    cfg = KDConfig(epochs=epochs, init=init, temperature=temperature, alpha=alpha,
                   kd_loss=kd_loss, dkd_beta=dkd_beta, seed=seed,
                   batch_size=batch_size, lr=lr, limit_train=limit_train, limit_val=limit_val,
                   data_dir=str(data_dir) if data_dir else None, augment=not no_augment,
                   calib_images=calib_images, checkpoint_every=checkpoint_every,
                   progress=progress)
    source = None if teacher.lower() == "none" else teacher
    # a valid loss other than kd would be ignored without a word (a bad name is refused
    # later, naming the valid ones)
    if source is None and kd_loss != "kd" and kd_loss in KD_LOSSES:
        raise UsageError(f"--kd-loss {kd_loss} needs a teacher; with --teacher none the "
                         "students train with plain CE")
    with stdout_to_stderr(as_json):
        result = distill_plan(plan, source, cfg, out, candidate, resume,
                              resolve_torch_device(torch_device, device))
    if result["rank"] != 0:
        return
    students = [{"id": s["id"], "out_dir": str(out / s["id"]), "arch": s["arch_summary"],
                 "method": s["method"], **s["metrics"], "train_time_s": s["train_time_s"]}
                for s in result["students"]]
    if as_json:
        print_json({"out_dir": str(out), "students": students})
        return
    for s in students:
        typer.echo(f"{s['id']} ({s['method']}): val top-1 {s['val_top1']:.2f}%, test top-1 "
                   f"{s['test_top1']:.2f}% ({s['train_time_s']:.0f} s) -> {s['out_dir']}  "
                   f"{s['arch']}")
