"""``gtnd predictor fit``: accuracy predictor from a GTN-trained supernet (torch inside)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.choices import resolve_torch_device, torch_device_options
from gtn_deploy.cli.common import user_errors
from gtn_deploy.errors import UsageError

app = typer.Typer(help="Accuracy predictor for 'gtnd plan --predictor'.", no_args_is_help=True,
                  add_completion=False)


@app.command("fit")
@user_errors
def fit(
    teacher: Annotated[Path, typer.Option(
        "--teacher", help="GTN teacher run folder (its supernet/ is evaluated).")],
    out: Annotated[Path, typer.Option("--out", help="Predictor JSON to write.")],
    samples: Annotated[int, typer.Option(help="Subnets to sample and evaluate.")] = 100,
    holdout: Annotated[float, typer.Option(
        help="Share of subnets held out to report Kendall tau and RMSE.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the subnet sample and the split.")] = 0,
    calib_images: Annotated[int, typer.Option(
        help="Training images for each subnet's BN recalibration.")] = 500,
    limit_val: Annotated[Optional[int], typer.Option(
        help="Evaluate on a stratified subset of N validation images.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset folder override.")] = None,
    torch_device: Annotated[str, torch_device_options()[0]] = "auto",
    device: Annotated[Optional[str], torch_device_options()[1]] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-subnet lines.")] = False,
) -> None:
    """Evaluate sampled subnets (BN recalibrated), fit the predictor, report tau / RMSE."""
    from gtn_deploy.arch import ArchConfig
    from gtn_deploy.checks import check_seed
    from gtn_deploy.io_utils import atomic_write_json, check_output_file
    from gtn_deploy.search.predictor import fit_with_holdout
    from gtn_deploy.train.distributed import pick_device
    from gtn_deploy.train.kd_subnets import evaluate_supernet_subnets

    if samples < 5:
        raise UsageError(f"--samples must be at least 5, got {samples}")
    if not 0 <= holdout < 1:
        raise UsageError(f"--holdout must be in [0, 1), got {holdout}")
    check_seed(seed)
    check_output_file(out)  # before minutes of evaluating subnets

    def show(i: int, row: dict) -> None:
        if not quiet:
            typer.echo(f"[{i + 1}/{samples}] {row['summary']}: top-1 {row['top1']:.2f}%",
                       err=True)

    space, rows = evaluate_supernet_subnets(
        teacher, samples, seed, calib_images, limit_val, str(data_dir) if data_dir else None,
        device=pick_device(resolve_torch_device(torch_device, device)), on_result=show)
    archs = [ArchConfig.from_dict(r["arch"]) for r in rows]
    model = fit_with_holdout(space, archs, [r["top1"] for r in rows], holdout, seed)
    model.report["teacher"] = str(teacher)
    model.save(out)
    atomic_write_json(out.with_name(out.stem + ".subnets.json"),
                      {"kind": "gtn_deploy.subnet_accuracies", "space": space.name,
                       "teacher": str(teacher), "subnets": rows})
    typer.echo(json.dumps({"out": str(out), **model.report}))
