"""``gtnd calibrate``: measure subnets on this machine (or --host) and write a calibrated
profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.bench.calibration import (calibrate as calibrate_device, calibration_warnings,
                                          format_report)
from gtn_deploy.bench.remote_calibrate import RemoteSite
from gtn_deploy.cli.choices import RUNTIME_OVERRIDES, WORK_TASK, choice, space_option, task_option
from gtn_deploy.cli.common import (holdout_count, holdout_option, host_option, identity_option,
                                   insecure_host_key_option, remote_python_option,
                                   ssh_option_option, ssh_target, user_errors)
from gtn_deploy.cli.output import print_json, stdout_to_stderr
from gtn_deploy.constants import PRECISIONS
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import (atomic_write_json, check_output_file, check_outputs_apart,
                                 check_replaces_own_kind)
from gtn_deploy.spaces import DEFAULT_FAMILY

RUNTIME_HELP = ("Measure with this instead of the profile's runtime (default: the profile's "
                "own: onnxruntime with its provider, CUDA for a GPU profile naming none; "
                "TensorRT; or OpenVINO on its device). onnxruntime-cpu is for a machine "
                "without that runtime, openvino measures with OpenVINO on the CPU (pip install "
                "'gtn-deploy[openvino]'): the profile then records the deviation, and plan "
                "warns.")
PRECISION_HELP = ("Precision to measure (default: the profile's preferred where calibration "
                  "measures it: fp32 with onnxruntime or OpenVINO, fp16 or fp32 with TensorRT; "
                  "int8 is refused, its models need real data to quantise).")


@user_errors
def calibrate(
    device: Annotated[str, typer.Option("--device", "-d", help="Device id, alias or YAML file, or 'local' for this machine.")],
    runtime: Annotated[Optional[str], choice(RUNTIME_OVERRIDES, RUNTIME_HELP, "--runtime", label="RUNTIME")] = None,
    precision: Annotated[Optional[str], choice(PRECISIONS, PRECISION_HELP)] = None,
    task: Annotated[str, task_option("Search space whose subnets to measure.")] = WORK_TASK,
    space: Annotated[str, space_option("Search space family whose subnets to measure, as plan --space; tier 2 then applies to that space only.")] = DEFAULT_FAMILY,
    samples: Annotated[int, typer.Option(help="Subnets measured for the fit (spanning the FLOPs range).")] = 30,
    holdout: Annotated[float, holdout_option("Held-out subnets: N random ones measured besides the --samples, to validate the fit. A count, as in predictor fit.")] = 20,
    threads: Annotated[int, typer.Option(help="Intra-op threads of onnxruntime or OpenVINO (part of the fingerprint).")] = 1,
    rounds: Annotated[int, typer.Option(help="Interleaved measuring rounds per subnet.")] = 5,
    iters: Annotated[int, typer.Option(help="Timed runs per subnet per round.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed for choosing subnets.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Profile YAML to write (default calibrated_profiles/<id>-<fingerprint>.yaml).")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Also write the calibration and validation report as JSON.")] = None,
    force: Annotated[bool, typer.Option(help="Calibrate even if this machine is not the profile's target (recorded). With --host the device is the target.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document ({profile_path, calibration}).")] = False,
    host: Annotated[Optional[str], host_option("Measure on this machine over SSH: the subnets are exported here and timed there by a standalone script, with python3, numpy and onnxruntime there (no gtn_deploy); its fingerprint is recorded.")] = None,
    remote_python: Annotated[str, remote_python_option()] = "python3",
    identity: Annotated[Optional[Path], identity_option()] = None,
    ssh_option: Annotated[Optional[list[str]], ssh_option_option()] = None,
    insecure_host_key: Annotated[bool, insecure_host_key_option()] = False,
) -> None:
    """Fit latency tiers 1 and 2 from measurements here (or on --host), with the profile's
    runtime and precision; print the held-out accuracy. Tier 2 needs onnxruntime's CPU
    provider (its node profiler): TensorRT, OpenVINO and GPU providers fit tier 1 only. A fit with
    under half of the held-out subnets within +-10% is written marked untrusted."""
    if rounds < 1 or iters < 1:
        raise UsageError("--rounds and --iters must be >= 1")
    holdout = holdout_count(holdout, samples)
    check_output_file(report)
    # the profile read is an input; --out (checked by calibrate) and --report are outputs
    check_outputs_apart({"--out": out, "--report": report},
                        {"--device": Path(device) if Path(device).is_file() else None})
    check_replaces_own_kind(report, "--report", "a calibration report",
                            lambda d: isinstance(d, dict) and "validation" in d and "tier1" in d)
    site = None
    if host is not None:
        site = RemoteSite(ssh_target(host, identity, ssh_option, insecure_host_key),
                          remote_python)

    def measured(calibration: dict) -> None:  # shown before anything is written
        typer.echo(format_report(calibration, device), err=as_json)  # stdout: the JSON only
        for line in calibration_warnings(calibration):
            typer.echo(line if line.startswith("note:") else f"warning: {line}", err=True)
        if report is not None:
            atomic_write_json(report, calibration)

    with stdout_to_stderr(as_json):
        path, calibration = calibrate_device(device, task, samples, holdout, threads, out, force, seed,
                                rounds, iters, precision=precision, runtime=runtime,
                                on_measured=measured, site=site, family=space)
    if as_json:
        print_json({"profile_path": str(path), "calibration": calibration})
        return
    typer.echo(f"calibrated profile written to {path}")
