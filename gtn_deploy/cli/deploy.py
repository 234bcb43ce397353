"""``gtnd deploy``: per-device bundles from a trained supernet, no training (torch inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.common import split_csv, user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.pipeline.deploy import DeployConfig, run_deploy


@user_errors
def deploy(
    supernet: Annotated[Path, typer.Option(help="Supernet folder (gtnd supernet import, or a teacher run's supernet/).")],
    devices: Annotated[list[str], typer.Option("--devices", "--device", "-d", help="Device ids, aliases or YAML files; repeat or comma-separate.")],
    out: Annotated[Path, typer.Option(help="Run folder: OUT/<device>/{plan.json, student/, bundle/, results.json}, OUT/report.{json,md}.")],
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="ImageFolder tree (train/<class>/, val/<class>/): BN recalibration, parity and accuracy.")] = None,
    recalibrate_bn: Annotated[int, typer.Option("--recalibrate-bn", help="Training images for each student's BN statistics (0: keep the supernet's).")] = 2000,
    margin: Annotated[float, typer.Option(help="Safety margin: plan under budget x (1 - margin).")] = 0.1,
    latency_ms: Annotated[Optional[float], typer.Option("--latency-ms", help="Latency budget of every device; default: each profile's.")] = None,
    seed: Annotated[int, typer.Option(help="Search and image-draw seed.")] = 0,
    int8: Annotated[Optional[bool], typer.Option("--int8/--no-int8", help="INT8 bundles; default: where the profile lists int8 (needs 300 training images).")] = None,
    eval_images: Annotated[Optional[int], typer.Option("--eval-images", help="Validation images for parity and accuracy; default: all (at least 256).")] = None,
    bench_iters: Annotated[int, typer.Option("--bench-iters", help="Timed calls of each bench here.")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON document.")] = False,
) -> None:
    """plan -> extract -> recalibrate BN -> export -> bench (here) for each device, with a report."""
    cfg = DeployConfig(str(supernet), tuple(split_csv(devices)),
                       str(data_dir) if data_dir else None, recalibrate_bn, margin, latency_ms,
                       seed, int8, eval_images, bench_iters)
    with stdout_to_stderr(as_json):
        report = run_deploy(cfg, out)
    if as_json:
        print_json(report)
        return
    typer.echo((out / "report.md").read_text())
    typer.echo(f"report: {out / 'report.md'}")
