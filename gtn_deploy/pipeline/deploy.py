"""Deploy a trained supernet without training: plan -> extract -> recalibrate BN -> export ->
bench, for each device (``gtnd deploy``).

For a published supernet (``gtnd supernet import``) at its real resolution: the profiles'
budgets are set for 224-pixel ImageNet models, so nothing is scaled. Each device's files go
to ``OUT/<device>/`` (plan.json, student/, bundle/, results.json where it runs here); the
report is ``OUT/report.{json,md}``. A rerun replaces them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gtn_deploy import __version__
from gtn_deploy.bench.run import bench_bundle, target_problem
from gtn_deploy.errors import UsageError
from gtn_deploy.export.bundle import ExportOptions, export_student
from gtn_deploy.io_utils import atomic_write_json, atomic_write_text
from gtn_deploy.profiles import load_profile
from gtn_deploy.search.planner import PlanRequest, plan_device, plan_document
from gtn_deploy.spaces import supernet_space
from gtn_deploy.spaces.base import Space
from gtn_deploy.train.extract import Recalibration, extract_student

REPORT_KIND = "gtn_deploy.deploy_report"


@dataclass(frozen=True)
class DeployConfig:
    supernet: str
    devices: tuple[str, ...]
    data_dir: str | None
    recalibrate_images: int = 2000  # Once-for-All's number; 0: the stored statistics
    margin: float = 0.1
    latency_ms: float | None = None  # None: each profile's own budget
    seed: int = 0
    int8: bool | None = None  # None: where the profile lists int8
    eval_images: int | None = None
    bench_iters: int = 2000
    progress: bool = True


def run_deploy(cfg: DeployConfig, out: str | Path) -> dict[str, Any]:
    """Every device's bundle from the supernet; returns the report document."""
    if not cfg.devices:
        raise UsageError("give at least one --devices entry (see 'gtnd profiles list')")
    if cfg.recalibrate_images and not cfg.data_dir:
        raise UsageError("--recalibrate-bn needs --data-dir (an ImageFolder tree), or pass "
                         "--recalibrate-bn 0 to keep the supernet's BN statistics")
    space = supernet_space(cfg.supernet)
    if space.task.dataset == "imagefolder" and not cfg.data_dir:  # before any device's work
        raise UsageError(f"space '{space.name}' reads its images from an ImageFolder tree: "
                         f"give --data-dir (train/<class>/, val/<class>/ with >= 256 images)")
    profiles = [load_profile(d) for d in cfg.devices]  # every device resolves first
    out = Path(out)
    atomic_write_json(out / "config.json", {"kind": "gtn_deploy.deploy_config",
                                            "tool_version": __version__, **asdict(cfg)})
    rows = [_device(cfg, space, profile, out / profile.id) for profile in profiles]
    report = {"schema_version": 1, "kind": REPORT_KIND, "tool_version": __version__,
              "supernet": cfg.supernet, "space": space.name, "devices": rows}
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    return report


def _device(cfg: DeployConfig, space: Space, profile, folder: Path) -> dict[str, Any]:
    entry = plan_device(PlanRequest.for_device(profile, space, margin=cfg.margin,
                                               latency_ms=cfg.latency_ms, seed=cfg.seed))[1]
    atomic_write_json(folder / "plan.json", plan_document(space, [entry]))
    recal = Recalibration(cfg.recalibrate_images, cfg.data_dir, seed=cfg.seed) \
        if cfg.recalibrate_images else None
    extract_student(cfg.supernet, folder / "plan.json", 0, folder / "student", recal,
                    overwrite=True, progress=cfg.progress)
    bundle = _export(cfg, profile, folder, entry["budget"]["latency_ms"])
    best = entry["candidates"][0]
    row = {"device": profile.id, "budget_ms": entry["budget"]["latency_ms"],
           "percentile": entry["budget"]["percentile"], "arch": best["summary"],
           "resolution": best["arch"]["resolution"], "mflops": best["mflops"],
           "predicted_ms": best["latency_ms"], "bn_recalibration_images": cfg.recalibrate_images,
           **bundle, "bench": None}
    if _runs_here(profile):
        row["bench"] = _bench(cfg, folder)
    return row


def _export(cfg: DeployConfig, profile, folder: Path, budget_ms: float) -> dict[str, Any]:
    int8 = ("int8" in profile.precisions) if cfg.int8 is None else cfg.int8
    options = ExportOptions(int8=int8, calib_images=300 if int8 else 0,
                            eval_images=cfg.eval_images, data_dir=cfg.data_dir,
                            name="bundle", overwrite=True, allow_accuracy_drop=True,
                            budget_ms=budget_ms)
    result = export_student(folder / "student", profile, folder, options,
                            progress=cfg.progress)
    m = result.manifest
    parity = m.metrics["parity"]["onnxruntime_fp32"]
    return {"bundle": str(result.path), "recommended_precision": m.recommended_precision,
            "fp32_top1": m.metrics["fp32_top1"], "int8_top1": m.metrics.get("int8_top1"),
            "parity_max_abs_diff": parity["max_abs_diff"]}


def _runs_here(profile) -> bool:
    """Bench only where the bundle's target is this machine (``local`` always is)."""
    return profile.id == "local" or target_problem(profile.id) is None


def _bench(cfg: DeployConfig, folder: Path) -> dict[str, Any]:
    result = bench_bundle(folder / "bundle", iters=cfg.bench_iters, threads=1)
    atomic_write_json(folder / "results.json", result)
    timing = result["timing"]
    budget = result.get("budget") or {}
    return {"p50_ms": timing["p50_ms"], "p90_ms": timing["p90_ms"],
            "fits": budget.get("fits"), "unsettled": budget.get("unsettled"),
            "noisy": result["noise"]["warning"] is not None}


def report_markdown(report: dict[str, Any]) -> str:
    """One table row per device: its budget, student, parity and measured latency."""
    lines = [f"# Deploy report: {report['supernet']} ({report['space']})", "",
             "No training: each student is the planned subnet's weights, BN statistics "
             "recalibrated, exported and benchmarked here where this machine is the target "
             "(kernel sizes and expand ratios per stage are separated by / in the table).", "",
             "| device | budget ms | student | MFLOPs | predicted ms | measured p50 / p90 ms "
             "| precision | parity max diff | fp32 top-1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["devices"]:
        bench = r["bench"]
        measured = "not run here"
        if bench:
            fits = {True: "fits", False: "over", None: "?"}[bench["fits"]]
            measured = (f"{bench['p50_ms']:.3g} / {bench['p90_ms']:.3g} ({fits}"
                        + (", unsettled" if bench["unsettled"] else "") + ")")
        lines.append(f"| {r['device']} | {r['percentile']} {r['budget_ms']:.4g} | "
                     f"`{r['arch'].replace('|', '/')}` | {r['mflops']:.0f} | {r['predicted_ms']:.3g} | "
                     f"{measured} | {r['recommended_precision']} | "
                     f"{r['parity_max_abs_diff']:.2g} | {r['fp32_top1']:.2f}% |")
    return "\n".join(lines) + "\n"
