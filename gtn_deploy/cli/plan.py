"""``gtnd plan``: which students of the supernet fit each device (no torch on this path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gtn_deploy.checks import check_seed
from gtn_deploy.cli.choices import PLAN_TASK, choice, space_option, task_option
from gtn_deploy.cli.common import split_csv, user_errors
from gtn_deploy.constants import PRECISIONS
from gtn_deploy.cost.latency import check_precision
from gtn_deploy.errors import UsageError
from gtn_deploy.fingerprint import fingerprint_matches
from gtn_deploy.io_utils import atomic_write_json, check_outputs_apart, check_replaces_own_kind
from gtn_deploy.plan_file import PLAN_KIND
from gtn_deploy.profiles import load_profile
from gtn_deploy.search.planner import PlanRequest, plan_device, plan_document
from gtn_deploy.search.predictor import load_predictor
from gtn_deploy.spaces import DEFAULT_FAMILY, create_space, supernet_space
from gtn_deploy.spaces.base import Space


@user_errors
def plan(
    device: Annotated[list[str], typer.Option("--device", "-d", help="Device id, alias or YAML file; repeat or comma-separate for several.")],
    task: Annotated[str, task_option("Task whose search space to search.", for_plan=True)] = PLAN_TASK,
    space: Annotated[str, space_option("Search space family.")] = DEFAULT_FAMILY,
    supernet: Annotated[Optional[Path], typer.Option(help="Plan in this supernet folder's space (gtnd supernet import); replaces --task and --space.")] = None,
    latency_ms: Annotated[Optional[float], typer.Option("--latency-ms", help="Latency budget; default: the profile's.")] = None,
    memory_mb: Annotated[Optional[float], typer.Option("--memory-mb", help="Model memory budget; default: the profile's.")] = None,
    precision: Annotated[Optional[str], choice(PRECISIONS, "Default: the profile's preferred.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Default: the profile's.")] = None,
    margin: Annotated[float, typer.Option(help="Safety margin: search under budget x (1 - margin).")] = 0.1,
    scale_budget: Annotated[bool, typer.Option("--scale-budget", help="Scale the profile's latency budget (set for 224-pixel ImageNet models) to the task by the ratio of the spaces' largest networks.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", help="Distinct candidates per device.")] = 5,
    seed: Annotated[int, typer.Option(help="Search seed (the search is deterministic).")] = 0,
    predictor: Annotated[Optional[Path], typer.Option(help="Accuracy predictor file (gtnd predictor fit); default: capacity proxy.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write plan.json here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan document as JSON.")] = False,
) -> None:
    """Search the supernet for the students that fit each device's budget."""
    refs = split_csv(device)
    if not refs:
        raise UsageError("give at least one --device (see 'gtnd profiles list')")
    if top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {top_k}")
    if not 0 <= margin < 1:
        raise UsageError(f"--margin must be in [0, 1), got {margin}")
    check_seed(seed)
    space = supernet_space(supernet) if supernet is not None else create_space(space, task)
    if precision is not None:
        check_precision(precision)
    profiles = [load_profile(ref) for ref in refs]  # every device resolves before any search
    check_outputs_apart({"--out": out}, {f"--device {ref}": p.source_path
                                         for ref, p in zip(refs, profiles)})
    check_replaces_own_kind(out, "--out", "a plan",
                            lambda d: isinstance(d, dict) and d.get("kind") == PLAN_KIND)
    objective = _load_objective(predictor, space) if predictor else None
    entries, warnings = [], []
    for profile in profiles:
        req = PlanRequest.for_device(
            profile, space, precision=precision, batch_size=batch_size, latency_ms=latency_ms,
            memory_mb=memory_mb, scale_budget=scale_budget, margin=margin, top_k=top_k,
            seed=seed)
        entries.append(plan_device(req, objective)[1])
        warnings += _calibration_warnings(profile)
    document = plan_document(space, entries)
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)
    if out is not None:
        atomic_write_json(out, document)
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    for entry in entries:
        typer.echo(format_device_plan(entry))
    if out is not None:
        typer.echo(f"plan written to {out}")


def _load_objective(path: Path, space: Space):
    return load_predictor(path, space)


def _calibration_warnings(profile) -> list[str]:
    """A fingerprint other than this machine's, a fit marked untrusted, a calibration
    measured with another runtime than the profile's."""
    cal = getattr(profile, "calibration", None)
    if not cal:
        return []

    remote = cal.get("remote")
    if remote:  # measured on the device over ssh: this machine is not the one to compare
        out = []
    else:
        ok, reason = fingerprint_matches(cal)
        out = [] if ok else [f"{profile.id}: calibration fingerprint does not match this "
                             f"machine ({reason}); predictions may be off"]
    if cal.get("trusted") is False:
        out.append(f"{profile.id}: calibration not trusted ({cal.get('trust_reason', '?')}); "
                   f"its latencies may be off by more than the band shows: recalibrate on a "
                   f"quieter machine or with more --rounds")
    deviation = (cal.get("runtime") or {}).get("deviation")
    if deviation:
        out.append(f"{profile.id}: calibration {deviation}")
    return out


def format_device_plan(entry: dict) -> str:
    """A header and one table row per candidate."""
    b, lm = entry["budget"], entry["latency_model"]
    runtime = f"{entry['runtime']['name']} {entry['runtime']['version']}"
    fingerprint = "" if not lm.get("fingerprint") else " (calibrated)"
    lines = [
        f"{entry['device']}: {entry['device_name']} | {runtime}, {entry['precision']}, "
        f"batch {entry['batch_size']}",
        f"  budget {b['percentile']} {b['latency_ms']:.4g} ms (searched under "
        f"{b['effective_latency_ms']:.4g} ms), memory {b['memory_mb']:g} MB | latency model tier "
        f"{lm['tier']}{fingerprint}, expected error +-{lm['expected_error']:.0%} | objective "
        f"{entry['objective']}, {entry['search']['evaluations']} archs evaluated",
    ]
    header = ("#", "architecture", "latency ms [band]", "within band", "MFLOPs", "params",
              "mem MB", "headroom")
    rows = [header]
    for i, c in enumerate(entry["candidates"]):
        lo, hi = c["latency_band_ms"]
        rows.append((str(i), c["summary"], f"{c['latency_ms']:.3g} [{lo:.3g}-{hi:.3g}]",
                     "yes" if c["within_band"] else "no", f"{c['mflops']:.1f}",
                     f"{c['params'] / 1e6:.2f}M", f"{c['memory_mb']:.1f}",
                     f"{c['latency_headroom']:.0%}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    lines.append("  #0 is the choice (highest objective); the others are lower latency tiers of "
                 "the Pareto front")
    lines.append(f"  [band] = prediction +-{lm['expected_error']:.0%} (the latency model's "
                 f"expected error); within band = yes when even the band's top meets the "
                 f"{b['latency_ms']:.4g} ms budget")
    note = (entry.get("budget_binding") or {}).get("note")
    if note:
        lines.append(f"  note: {note}")
    return "\n".join(lines) + "\n"
