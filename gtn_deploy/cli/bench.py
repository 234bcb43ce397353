"""``gtnd bench``: time a bundle on this machine (no torch, no training code on this path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.bench.remote import bench_remote, format_remote as fmt
from gtn_deploy.bench.run import RESULT_KIND, bench_bundle, verdict_lines
from gtn_deploy.cli.choices import BACKENDS, choice
from gtn_deploy.cli.common import (host_option, identity_option, insecure_host_key_option,
                                   remote_python_option, ssh_option_option, ssh_target, user_errors)
from gtn_deploy.constants import PRECISIONS
from gtn_deploy.errors import UsageError
from gtn_deploy.io_utils import (atomic_write_json, check_output_file, check_outputs_apart,
                                 check_replaces_own_kind)
from gtn_deploy.machine import cores_text


@user_errors
def bench(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder or .tar.gz.")],
    backend: Annotated[str, choice(BACKENDS, "Runtime to time with (openvino: pip install 'gtn-deploy[openvino]').", label="BACKEND")] = "onnxruntime",
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Batch size. The old name --batch still works, hidden.")] = 1,
    batch: Annotated[Optional[int], typer.Option(
        "--batch", hidden=True, help="Old name of --batch-size.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: runtime's).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the first inference.")] = 10,
    iters: Annotated[Optional[int], typer.Option(help="Timed runs (default: 3 s and at least 100 runs).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Time for this long instead of --iters.")] = None,
    rounds: Annotated[Optional[int], typer.Option(help=(
        "Read the timed runs as this many consecutive rounds, each with its own p90; a budget "
        "verdict whose rounds disagree is reported as unsettled (default: 10, fewer when "
        "--iters is small; here only, not with --host)."))] = None,
    precision: Annotated[Optional[str], choice(PRECISIONS, "fp16 with tensorrt only; default: the bundle's recommendation where the backend runs it, else fp32.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results JSON here.")] = None,
    force: Annotated[bool, typer.Option(help="Run despite hash or device mismatches (recorded).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results document.")] = False,
    host: Annotated[Optional[str], host_option(
        "Run on this machine over SSH: gtn_deploy's run_onnx.py (not the bundle's copy), with "
        "python3, numpy and onnxruntime there (no gtn_deploy).")] = None,
    remote_python: Annotated[str, remote_python_option()] = "python3",
    identity: Annotated[Optional[Path], identity_option()] = None,
    ssh_option: Annotated[Optional[list[str]], ssh_option_option()] = None,
    insecure_host_key: Annotated[bool, insecure_host_key_option()] = False,
) -> None:
    """Measure a bundle's latency here (or on --host) and compare it with its prediction."""
    check_output_file(out)
    check_outputs_apart({"--out": out}, {"the bundle": bundle})
    check_replaces_own_kind(out, "--out", "a bench result",
                            lambda d: isinstance(d, dict) and d.get("kind") == RESULT_KIND)
    batch_size = batch_size if batch is None else batch
    if host is not None:
        if rounds is not None:
            raise UsageError("--rounds is for a bench on this machine; --host runs the "
                             "bundle's run_onnx.py, which times one loop")
        result = _bench_remote(bundle, host, backend, batch_size, seconds, remote_python,
                               identity, ssh_option, insecure_host_key, precision, threads,
                               warmup, iters, force)
    else:
        result = bench_bundle(bundle, backend, batch_size, threads, warmup, iters, seconds,
                              precision, force, rounds)
    for problem in result["forced"]:
        typer.echo(f"warning: forced past: {problem}", err=True)
    if result["noise"]["warning"]:
        typer.echo(f"warning: {result['noise']['warning']}", err=True)
    # printed before the write, so a failing --out loses no measurement
    text = format_result(result) if host is None else format_remote(result)
    typer.echo(json.dumps(result, indent=2) if as_json else text)
    if out is not None:
        atomic_write_json(out, result)
        if not as_json:
            typer.echo(f"results written to {out}")


def _bench_remote(bundle, host, backend, batch_size, seconds, remote_python, identity,
                  ssh_option, insecure_host_key, precision, threads, warmup, iters, force):
    if backend != "onnxruntime" or batch_size != 1 or seconds is not None:
        raise UsageError("--host runs the bundle's run_onnx.py: onnxruntime, the model's own "
                         "batch and --iters only (no --backend, --batch-size or --seconds)")
    target = ssh_target(host, identity, ssh_option, insecure_host_key)
    return bench_remote(bundle, target, remote_python, precision, threads, warmup, iters,
                        force)


def format_remote(r: dict) -> str:
    return fmt(r)


def format_result(r: dict) -> str:
    t, env = r["timing"], r["environment"]
    version = (r.get("runtime_version") or r["runner"].get("tensorrt")
               or (env.get("onnxruntime") or {}).get("version", ""))
    lines = [
        f"{r['bundle']['name']} | {r['backend']} {version}"
        f" {r['precision']} batch {r['batch_size']} threads {r['threads'] or 'default'}",
        f"  {env['cpu_model']} ({env['machine']}, {cores_text(env['cpu_cores_usable'])})"
        + (f", GPU {env['gpu_name']}" if env.get("gpu_name") else ""),
        f"  p50 {t['p50_ms']:.3f} ms  p90 {t['p90_ms']:.3f} ms  p95 {t['p95_ms']:.3f} ms  "
        f"p99 {t['p99_ms']:.3f} ms",
        f"  mean {t['mean_ms']:.3f} ms +- {t['std_ms']:.3f} ms  min {t['min_ms']:.3f} ms  "
        f"max {t['max_ms']:.3f} ms",
        f"  {t['throughput_ips']:.1f} img/s over {t['iters']} runs in {t['total_s']:.2f} s | "
        f"first {t['first_ms']:.2f} ms | build {r['build_s']:.3f} s | peak RSS "
        f"{r['memory']['peak_rss_mb']:.0f} MB | load {r['noise']['load_avg_1m']}",
    ]
    return "\n".join(lines + verdict_lines(r))
