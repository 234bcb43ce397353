"""The pipeline's report: report.md (with PNG plots beside it) and a self-contained report.html.

Everything shown is read back from the stage folders, so the report of a resumed run is the
same as that of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gtn_deploy.io_utils import atomic_write_bytes, atomic_write_text
from gtn_deploy.manifest import load_manifest

from gtn_deploy.pipeline.report_html import render_html
from gtn_deploy.pipeline.report_plots import render_plots
from gtn_deploy.pipeline.report_tables import render_markdown
from gtn_deploy.pipeline.state import DeviceBranch, PipelineRun


def _marker(path: Path | None) -> dict:
    return json.loads((path / "_stage.json").read_text()) if path else {}


def gather(run: "PipelineRun") -> dict[str, Any]:
    """The numbers of the report, from the finished stages."""
    teacher = _marker(run.teacher.path)
    pool = json.loads((run.teacher.path / "pool.json").read_text())
    rows = [_device_row(b, pool["devices"], run.out) for b in run.branches]
    vanilla = run.vanilla_teacher
    order = ([b.plan.path for b in run.branches] + [run.teacher.path]
             + ([vanilla.path] if vanilla else [])
             + [s.path for b in run.branches for s in (
                 b.student, b.baseline, b.vanilla, b.bundle, b.bench) if s])
    stages = [{"stage": m["stage"], "seconds": m["seconds"]} for m in map(_marker, order)]
    c = run.cfg
    settings = {"family": c.space, "teacher_epochs": c.teacher_epochs,
                "distill_epochs": c.distill_epochs,
                "teacher_train_images": c.limit_train or "all",
                "student_train_images": c.distill_limit_train or "all", "init": c.init,
                "student_batch_size": c.distill_batch_size, "student_lr": c.distill_lr,
                "alpha": c.alpha, "temperature": c.temperature, "kd_loss": c.kd_loss,
                **({"dkd_beta": c.dkd_beta} if c.kd_loss == "dkd" else {}),
                "augment": c.augment,
                "baseline": ",".join(c.baseline) or "none",
                "bundle_eval_images": c.eval_images or "all",
                "seed": c.seed}
    return {"task": run.cfg.task, "quick": run.cfg.quick, "settings": settings, "teacher": {
        "name": run.cfg.teacher, "epochs": run.cfg.teacher_epochs, "sampler": run.cfg.sampler,
        **teacher["figures"], "seconds": teacher["seconds"], "pool_devices": pool["devices"]},
        "vanilla_teacher": {**_marker(vanilla.path)["figures"],
                            "seconds": _marker(vanilla.path)["seconds"]} if vanilla else None,
        "devices": rows, "stages": stages}


def _device_row(b: "DeviceBranch", pool_devices: list[str], out: Path) -> dict:
    plan, manifest = b.planned(), load_manifest(b.bundle.path / "bundle")
    best = plan.best
    bench = _marker(b.bench.path)["figures"] if b.bench else None
    met, pred = manifest.metrics, manifest.latency_prediction or {}
    student = _marker(b.student.path)["figures"]
    ce = _marker(b.baseline.path)["figures"] if b.baseline else None
    vanilla = _marker(b.vanilla.path)["figures"] if b.vanilla else None
    return {
        "device": b.id, "name": b.profile.name, "precision": plan.precision,
        "budget_ms": plan.budget_ms, "arch": best.arch.summary(),
        "mflops": best.mflops, "params": best.params, "planned_ms": best.latency_ms,
        "student_val_top1": student.get("val_top1"),
        "student_test_top1": student.get("test_top1"),
        # the same arch, data, epochs and initialisation with plain CE: what KD added
        "ce_top1": ce["test_top1"] if ce else None,
        "kd_gain": round(student["test_top1"] - ce["test_top1"], 4) if ce else None,
        # the same student distilled from a vanilla teacher: what the GTN teacher added
        "vanilla_top1": vanilla["test_top1"] if vanilla else None,
        "gtn_gain": round(student["test_top1"] - vanilla["test_top1"], 4) if vanilla else None,
        "fp32_top1": met.get("fp32_top1"), "int8_top1": met.get("int8_top1"),
        "recommended_precision": manifest.recommended_precision,
        "predicted_ms": pred.get("latency_ms"), "tier": pred.get("tier"),
        "measured_p50_ms": bench["p50_ms"] if bench else None,
        "measured_p90_ms": bench.get("p90_ms") if bench else None,
        # the lowest and highest p90 of the bench's consecutive rounds (timing.round_range)
        "measured_p90_range_ms": bench.get("round_p90_range_ms") if bench else None,
        "measured_noisy": bench.get("noisy") if bench else None,
        "bundle": str(b.bundle.path / "bundle"), "in_teacher_pool": b.id in pool_devices,
        # links and next steps: relative to report.html, which sits in the run folder
        "bundle_rel": Path(os.path.relpath(b.bundle.path / "bundle", out)).as_posix(),
        "runtime": (plan.doc.get("runtime") or {}).get("name"), "runs_here": b.runs_here,
        "pareto": plan.doc["pareto"], "chosen": best.doc,
    }


def write_report(run: "PipelineRun") -> dict:
    data = gather(run)
    atomic_write_text(run.out / "report.json", json.dumps(data, indent=2, default=str) + "\n")
    render_files(data, run.out)
    return data


def render_files(data: dict, out: Path) -> None:
    """report.md with its PNG plots beside it, and the self-contained report.html, from the
    report's data (what report.json holds, so an older run's report can be re-rendered)."""
    plots = render_plots(data)
    for name, png in plots.items():
        atomic_write_bytes(out / f"{name}.png", png)
    atomic_write_text(out / "report.md", render_markdown(data, list(plots)))
    atomic_write_text(out / "report.html", render_html(data, plots))


def rerender(report_json: Path) -> None:
    """Render report.md / report.html again beside ``report_json`` with today's layout."""
    render_files(json.loads(Path(report_json).read_text()), Path(report_json).parent)


