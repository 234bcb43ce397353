"""``gtnd extract``: a planned student out of a supernet folder, no training (torch inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.common import user_errors
from gtn_deploy.errors import UsageError
from gtn_deploy.train.extract import Recalibration, extract_student


@user_errors
def extract(
    supernet: Annotated[Path, typer.Option(help="Supernet folder (gtnd supernet import, or a teacher run's supernet/).")],
    plan: Annotated[Path, typer.Option(help="plan.json from 'gtnd plan' for the supernet's space.")],
    out: Annotated[Path, typer.Option(help="Student folder to write (what gtnd export takes).")],
    candidate: Annotated[int, typer.Option(help="The K-th candidate (0-based) over all devices of the plan in order, as in plan.json:K.")] = 0,
    recalibrate_bn: Annotated[Optional[int], typer.Option("--recalibrate-bn", help="Measure the student's BatchNorm statistics on N training images of --data-dir (Once-for-All uses 2000).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="ImageFolder tree (train/<class>/*.jpg) for --recalibrate-bn.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per recalibration batch.")] = 50,
    seed: Annotated[int, typer.Option(help="Which training images are drawn.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Copy a planned student's weights out of a supernet; optionally recalibrate its BN."""
    if data_dir is not None and recalibrate_bn is None:
        raise UsageError("--data-dir is only read with --recalibrate-bn N")
    recal = None if recalibrate_bn is None else Recalibration(
        recalibrate_bn, str(data_dir) if data_dir else None, batch_size, seed)
    result = extract_student(supernet, plan, candidate, out, recal, overwrite)
    bn = result["bn_recalibration"]
    note = f", BN recalibrated on {bn['images']} images" if bn else ", BN statistics as stored"
    typer.echo(f"candidate {result['candidate']} ({result['device']}): "
               f"{result['arch'].summary()}{note} -> {result['out_dir']}")
