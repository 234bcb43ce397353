"""``gtnd predictor fit``: accuracy predictor from a GTN-trained supernet (torch inside).

The space, of any family, is the supernet checkpoint's own (``supernet.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.checks import check_seed
from gtn_deploy.cli.choices import resolve_torch_device, torch_device_options
from gtn_deploy.cli.common import holdout_count, holdout_option, user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import atomic_write_json, check_output_file
from gtn_deploy.search.predictor import fit_with_holdout

app = typer.Typer(help="Accuracy predictor for 'gtnd plan --predictor'.", no_args_is_help=True,
                  add_completion=False)


@app.command("fit")
@user_errors
def fit(
    teacher: Annotated[Path, typer.Option(
        "--teacher", help="GTN teacher run folder (its supernet/ is evaluated).")],
    out: Annotated[Path, typer.Option("--out", help="Predictor JSON to write.")],
    samples: Annotated[int, typer.Option(help="Subnets to sample and evaluate.")] = 100,
    holdout: Annotated[Optional[float], holdout_option(
        "Held-out subnets: N of the --samples left out of the fit to report Kendall tau "
        "and RMSE on, then fitted on too (default: a fifth of --samples; 0: none). A "
        "count, as in calibrate.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the subnet sample and the split.")] = 0,
    calib_images: Annotated[int, typer.Option(
        help="Training images for each subnet's BN recalibration.")] = 500,
    limit_val: Annotated[Optional[int], typer.Option(
        help="Evaluate on a stratified subset of N validation images.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset folder override.")] = None,
    torch_device: Annotated[str, torch_device_options()[0]] = "auto",
    device: Annotated[Optional[str], torch_device_options()[1]] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-subnet lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Print the result as one JSON document ({predictor_path, subnets_path, n, "
        "holdout_n, holdout_kendall_tau, holdout_rmse, ...}) instead of a summary."))]
    = False,
) -> None:
    """Evaluate sampled subnets (BN recalibrated), fit the predictor, report tau / RMSE."""
    from gtn_deploy.train.distributed import pick_device  # lazy: CLI start-up
    from gtn_deploy.train.kd_subnets import evaluate_supernet_subnets  # lazy: CLI start-up

    if samples < 5:
        raise UsageError(f"--samples must be at least 5, got {samples}")
    holdout = round(samples / 5) if holdout is None else holdout_count(holdout, samples)
    if holdout and samples - holdout < 3:
        raise UsageError(f"--holdout {holdout} of --samples {samples} leaves fewer than 3 "
                         "subnets to fit on")
    check_seed(seed)
    check_output_file(out)  # before minutes of evaluating subnets

    def show(i: int, row: dict) -> None:
        if not quiet:
            typer.echo(f"[{i + 1}/{samples}] {row['summary']}: top-1 {row['top1']:.2f}%",
                       err=True)

    with stdout_to_stderr(as_json):
        space, rows = evaluate_supernet_subnets(
            teacher, samples, seed, calib_images, limit_val,
            str(data_dir) if data_dir else None,
            device=pick_device(resolve_torch_device(torch_device, device)), on_result=show)
    archs = [space.arch_from_dict(r["arch"]) for r in rows]  # the supernet's family
    model = fit_with_holdout(space, archs, [r["top1"] for r in rows], holdout, seed)
    model.report["teacher"] = str(teacher)
    model.save(out)
    subnets = out.with_name(out.stem + ".subnets.json")
    atomic_write_json(subnets, {"kind": "gtn_deploy.subnet_accuracies", "space": space.name,
                                "teacher": str(teacher), "subnets": rows})
    if as_json:
        print_json({"predictor_path": str(out), "subnets_path": str(subnets), **model.report})
        return
    typer.echo(format_report(model.report, out))


def format_report(report: dict, out: Path) -> str:
    """One line: how well the predictor ranks the held-out subnets, and where it went."""
    held = "no held-out subnets"
    if report.get("holdout_n"):
        tau = report.get("holdout_kendall_tau")
        held = (f"on {report['holdout_n']} held-out subnets Kendall tau "
                f"{'undefined' if tau is None else f'{tau:.3f}'}, RMSE "
                f"{report['holdout_rmse']:.2f} points")
    return (f"predictor fitted on {report['n']} subnets ({held}); leave-one-out RMSE "
            f"{report['loo_rmse']:.2f} points -> {out}")
