"""``gtnd export``: student folder + device profile -> verified bundle (folder and .tar.gz)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.cli.common import user_errors
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.errors import UsageError
from gtn_deploy.export.bundle import ExportOptions, export_student
from gtn_deploy.io_utils import check_output_file
from gtn_deploy.profiles import load_profile


@user_errors
def export(
    student: Annotated[Path, typer.Option(help="Student folder (weights.safetensors + student.json).")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device id, alias or profile YAML file.")],
    out: Annotated[Path, typer.Option(help="Folder that receives <name>/ and <name>.tar.gz.")],
    int8: Annotated[Optional[bool], typer.Option("--int8/--no-int8", help="Make an NNCF INT8 model; default: when the profile lists int8.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13 for TensorRT 8.2 on the Jetson Nano).")] = 17,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Export a dynamic batch axis.")] = False,
    allow_accuracy_drop: Annotated[bool, typer.Option("--allow-accuracy-drop", help="Keep an INT8 model whose drop exceeds --max-drop.")] = False,
    max_drop: Annotated[float, typer.Option("--max-drop", help="INT8 gate: largest top-1 drop in points.")] = 1.0,
    eval_images: Annotated[Optional[int], typer.Option("--eval-images", help="Test images for accuracy; default: the whole test split.")] = None,
    build_engine: Annotated[bool, typer.Option("--build-engine", help="Also build the TensorRT engine here (on the device) and check its parity.")] = False,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Dataset folder; default: the system dataset.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Bundle name; default: <student>-<device>.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing bundle of that name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document ({bundle_path, tarball_path, elapsed_s, manifest}).")] = False,
) -> None:
    """Export a student to a bundle: ONNX (parity-gated), INT8 (accuracy-gated), TensorRT script."""
    if not (max_drop >= 0 and math.isfinite(max_drop)):  # NaN would pass every gate
        raise UsageError(f"--max-drop must be a finite number >= 0, got {max_drop}")
    if eval_images is not None and eval_images < 256:
        raise UsageError(f"--eval-images must be >= 256 (the parity gate's minimum), got {eval_images}")
    check_output_file(out, folder=True)
    profile = load_profile(device)
    options = ExportOptions(opset=opset, dynamic_batch=dynamic_batch, int8=int8,
                            max_drop_points=max_drop, allow_accuracy_drop=allow_accuracy_drop,
                            eval_images=eval_images, build_engine=build_engine,
                            data_dir=str(data_dir) if data_dir else None, name=name,
                            overwrite=overwrite)
    with stdout_to_stderr(as_json):
        result = export_student(student, profile, out, options)
    m = result.manifest
    if as_json:
        print_json({"bundle_path": str(result.path),
                    "tarball_path": str(result.tarball) if result.tarball else None,
                    "elapsed_s": round(result.seconds, 3), "manifest": m.doc})
        return
    met = m.metrics
    typer.echo(f"bundle: {result.path}" + (f" (+ {result.tarball.name})" if result.tarball else ""))
    typer.echo(f"fp32 top-1 {met['fp32_top1']:.2f}% on {met['eval_images']} images; parity "
               f"max |diff| {met['parity']['onnxruntime_fp32']['max_abs_diff']:.2g}")
    if met.get("int8_top1") is not None:
        typer.echo(f"int8 top-1 {met['int8_top1']:.2f}% (drop {met['int8_drop_points']:.2f} "
                   f"points, preset {met['int8_preset']})")
    typer.echo(f"recommended: {m.recommended_precision} ({m.doc['recommendation_reason']}); "
               f"{result.seconds:.1f} s")
