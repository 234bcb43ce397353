"""The pipeline's report: report.md (with PNG plots beside it) and a self-contained report.html.

Everything shown is read back from the stage folders, so the report of a resumed run is the
same as that of an uninterrupted one.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtn_deploy.io_utils import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from gtn_deploy.pipeline.run import DeviceBranch, PipelineRun


def _marker(path: Path | None) -> dict:
    return json.loads((path / "_stage.json").read_text()) if path else {}


def gather(run: "PipelineRun") -> dict[str, Any]:
    """The numbers of the report, from the finished stages."""
    teacher = _marker(run.teacher.path)
    pool = json.loads((run.teacher.path / "pool.json").read_text())
    rows = [_device_row(b, pool["devices"]) for b in run.branches]
    order = ([b.plan.path for b in run.branches] + [run.teacher.path]
             + [p for b in run.branches for p in (
                 b.student.path, b.baseline.path if b.baseline else None, b.bundle.path,
                 b.bench.path if b.bench else None) if p])
    stages = [{"stage": m["stage"], "seconds": m["seconds"]} for m in map(_marker, order)]
    c = run.cfg
    settings = {"teacher_epochs": c.teacher_epochs, "distill_epochs": c.distill_epochs,
                "teacher_train_images": c.limit_train or "all",
                "student_train_images": c.distill_limit_train or "all", "init": c.init,
                "student_batch_size": c.distill_batch_size, "student_lr": c.distill_lr,
                "alpha": c.alpha, "temperature": c.temperature, "kd_loss": c.kd_loss,
                **({"dkd_beta": c.dkd_beta} if c.kd_loss == "dkd" else {}),
                "augment": c.augment,
                "baseline": c.baseline, "bundle_eval_images": c.eval_images or "all",
                "seed": c.seed}
    return {"task": run.cfg.task, "quick": run.cfg.quick, "settings": settings, "teacher": {
        "name": run.cfg.teacher, "epochs": run.cfg.teacher_epochs, "sampler": run.cfg.sampler,
        **teacher["figures"], "seconds": teacher["seconds"], "pool_devices": pool["devices"]},
        "devices": rows, "stages": stages}


def _device_row(b: "DeviceBranch", pool_devices: list[str]) -> dict:
    plan = json.loads((b.plan.path / "plan.json").read_text())["devices"][0]
    manifest = json.loads((b.bundle.path / "bundle" / "manifest.json").read_text())
    bench = _marker(b.bench.path)["figures"] if b.bench else None
    met, pred = manifest["metrics"], manifest.get("latency_prediction") or {}
    student = _marker(b.student.path)["figures"]
    ce = _marker(b.baseline.path)["figures"] if b.baseline else None
    return {
        "device": b.id, "name": b.profile.name, "precision": plan["precision"],
        "budget_ms": plan["budget"]["latency_ms"], "arch": plan["candidates"][0]["summary"],
        "mflops": plan["candidates"][0]["mflops"], "params": plan["candidates"][0]["params"],
        "planned_ms": plan["candidates"][0]["latency_ms"],
        "student_val_top1": student.get("val_top1"),
        "student_test_top1": student.get("test_top1"),
        # the same arch, data, epochs and initialisation with plain CE: what KD added
        "ce_top1": ce["test_top1"] if ce else None,
        "kd_gain": round(student["test_top1"] - ce["test_top1"], 4) if ce else None,
        "fp32_top1": met.get("fp32_top1"), "int8_top1": met.get("int8_top1"),
        "recommended_precision": manifest["recommended_precision"],
        "predicted_ms": pred.get("latency_ms"), "tier": pred.get("tier"),
        "measured_p50_ms": bench["p50_ms"] if bench else None,
        "measured_p90_ms": bench.get("p90_ms") if bench else None,
        "bundle": str(b.bundle.path / "bundle"), "in_teacher_pool": b.id in pool_devices,
        "pareto": plan["pareto"], "chosen": plan["candidates"][0],
    }


def write_report(run: "PipelineRun") -> dict:
    data = gather(run)
    plots = _plots(data)
    for name, png in plots.items():
        atomic_write_bytes(run.out / f"{name}.png", png)
    atomic_write_text(run.out / "report.md", render_markdown(data, list(plots)))
    atomic_write_text(run.out / "report.html", render_html(data, plots))
    atomic_write_text(run.out / "report.json", json.dumps(
        {k: v for k, v in data.items()}, indent=2, default=str) + "\n")
    return data


def _fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def device_table(data: dict) -> tuple[list[str], list[list[str]]]:
    header = ["device", "student (arch)", "MFLOPs", "params", "budget p90 ms", "predicted ms",
              "measured p50 / p90 ms", "verdict", "test top-1 % (KD)", "CE baseline %",
              "KD gain", "bundle fp32 %", "int8 %", "recommended", "bundle"]
    rows = [[d["device"] + ("" if d["in_teacher_pool"] else " (added later)"), d["arch"],
             _fmt(d["mflops"], ".1f"), f"{d['params'] / 1e3:.0f}k", _fmt(d["budget_ms"], ".3g"),
             f"{_fmt(d['predicted_ms'], '.3g')} (tier {d['tier']})",
             f"{_fmt(d['measured_p50_ms'], '.3g')} / {_fmt(d.get('measured_p90_ms'), '.3g')}",
             budget_verdict(d), _fmt(d["student_test_top1"]),
             _fmt(d["ce_top1"]), _fmt(d["kd_gain"], "+.2f"),
             _fmt(d["fp32_top1"]), _fmt(d["int8_top1"]), d["recommended_precision"],
             f"`{d['bundle']}`"] for d in data["devices"]]
    return header, rows


def budget_verdict(d: dict) -> str:
    """Fits or over the device's p90 budget: measured p90 where the bundle ran here, else
    the prediction; with the headroom left."""
    basis, value = (("measured p90", d["measured_p90_ms"]) if d.get("measured_p90_ms")
                    else ("predicted", d["predicted_ms"]))
    if value is None:
        return "unknown"
    headroom = 1 - value / d["budget_ms"]
    return (f"fits ({basis}, {headroom:.0%} headroom)" if headroom >= 0
            else f"OVER ({basis}, {-headroom:.0%} over)")


def terminal_summary(data: dict) -> str:
    """A few lines for the terminal (the full tables are in report.md / report.html)."""
    t = data["teacher"]
    lines = [f"teacher {t['name']}: test top-1 {t['test_top1']:.2f}% ({t['train_time_s']:.0f} s)",
             f"{'device':<20} {'test top-1':>10} {'CE':>7} {'gain':>6} {'predicted':>10} "
             f"{'budget':>8}  verdict (p90 budget)"]
    for d in data["devices"]:
        lines.append(f"{d['device']:<20} {_fmt(d['student_test_top1']):>10} "
                     f"{_fmt(d['ce_top1']):>7} {_fmt(d['kd_gain'], '+.2f'):>6} "
                     f"{_fmt(d['predicted_ms'], '.3g'):>7} ms {_fmt(d['budget_ms'], '.3g'):>5} ms"
                     f"  {budget_verdict(d)}")
    return "\n".join(lines + [kd_verdict(data)])


def kd_verdict(data: dict) -> str:
    """One plain sentence: did the teacher help every device's student?"""
    rows = [d for d in data["devices"] if d["kd_gain"] is not None]
    if not rows:
        return "No CE baseline was trained (--baseline none): the KD gain is not known."
    lost = [d for d in rows if d["kd_gain"] < 0]
    if not lost:
        return (f"KD beat the CE baseline on every device (gain "
                f"{min(d['kd_gain'] for d in rows):+.2f} to {max(d['kd_gain'] for d in rows):+.2f}"
                " points of test top-1).")
    return ("KD LOST to plain CE on " + ", ".join(
        f"{d['device']} ({d['kd_gain']:+.2f} points)" for d in lost)
        + ": for those devices the teacher did not help.")


def cost_rows(data: dict) -> list[list[str]]:
    """One GTN teacher vs one specialised (SFTN-style) teacher per device."""
    t, n = data["teacher"]["train_time_s"], len(data["devices"])
    return [["GTN: one teacher for every device", f"{t:.0f} s", f"{t:.0f} s"],
            [f"specialised: one teacher per device (N = {n})", f"{t:.0f} s each (estimate)",
             f"{n * t:.0f} s"]]


def render_markdown(data: dict, plot_names: list[str]) -> str:
    t = data["teacher"]
    header, rows = device_table(data)
    lines = [f"# gtn_deploy pipeline report: {data['task']}", "",
             "Settings: " + ", ".join(f"{k} {v}" for k, v in data["settings"].items()) + ".",
             "", f"One GTN teacher ({t['name']}, {t['epochs']} epochs, sampler `{t['sampler']}`, "
             f"conditioned on the planned students of {', '.join(t['pool_devices'])}): "
             f"val top-1 {t['val_top1']:.2f}%, test top-1 {t['test_top1']:.2f}%, "
             f"trained in {t['train_time_s']:.0f} s.", "", "## Students and bundles", "",
             _table(header, rows), "", kd_verdict(data), "",
             "Test top-1 (KD) and the CE baseline are on the whole test split in PyTorch; the "
             "bundle's fp32 and int8 columns are the exported ONNX models in onnxruntime on "
             "bundle_eval_images test images. "
             "Predicted latency is for the device (from its profile); measured p50 only where "
             "the bundle's target is this machine.", "", "## Teacher cost", "",
             _table(["teachers", "training time", "total for the devices"], cost_rows(data)), "",
             "The per-device estimate assumes a specialised teacher costs what the GTN teacher "
             "did; `benchmarks/kd_pool.py` measures both.", "", "## Wall time per stage", "",
             _table(["stage", "seconds"], [[s["stage"], f"{s['seconds']:.1f}"]
                                           for s in data["stages"]]), ""]
    lines += [f"![{name}]({name}.png)" for name in plot_names]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # Arch summaries use '|' between stages: escape it inside Markdown cells.
    return "\n".join(out + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |"
                             for r in rows])


def render_html(data: dict, plots: dict[str, bytes]) -> str:
    header, rows = device_table(data)
    t = data["teacher"]

    def table(h, r):
        head = "".join(f"<th>{html.escape(x)}</th>" for x in h)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c)).strip('`')}</td>" for c in row)
                       + "</tr>" for row in r)
        return f"<table><tr>{head}</tr>{body}</table>"

    images = "".join(f'<figure><img alt="{n}" src="data:image/png;base64,'
                     f'{base64.b64encode(png).decode()}"></figure>' for n, png in plots.items())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>gtn_deploy report: {html.escape(data['task'])}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}img{{max-width:100%}}</style></head><body>
<h1>gtn_deploy pipeline report: {html.escape(data['task'])}</h1>
<p>Settings: {html.escape(", ".join(f"{k} {v}" for k, v in data["settings"].items()))}.</p>
<p>One GTN teacher ({html.escape(t['name'])}, {t['epochs']} epochs, sampler {html.escape(t['sampler'])}):
val top-1 {t['val_top1']:.2f}%, test top-1 {t['test_top1']:.2f}%, trained in {t['train_time_s']:.0f} s.</p>
<h2>Students and bundles</h2>{table(header, rows)}<p>{html.escape(kd_verdict(data))}</p>
<h2>Teacher cost</h2>{table(['teachers', 'training time', 'total'], cost_rows(data))}
<h2>Wall time per stage</h2>{table(['stage', 'seconds'], [[s['stage'], f"{s['seconds']:.1f}"] for s in data['stages']])}
<h2>Plots</h2>{images}</body></html>
"""


def _plots(data: dict) -> dict[str, bytes]:
    """PNG bytes per plot; none when matplotlib is missing (the tables still tell it all)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    import io

    def png(fig) -> bytes:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return buf.getvalue()

    devices = data["devices"]
    out = {}
    fig, axes = plt.subplots(1, len(devices), figsize=(4 * len(devices), 3.4), squeeze=False)
    for ax, d in zip(axes[0], devices):
        ax.plot([p["latency_ms"] for p in d["pareto"]], [p["mflops"] for p in d["pareto"]],
                "o-", ms=3, label="Pareto front")
        ax.plot([d["chosen"]["latency_ms"]], [d["chosen"]["mflops"]], "r*", ms=12, label="chosen")
        ax.axvline(d["budget_ms"], color="grey", ls="--", label="budget")
        ax.set(title=d["device"], xlabel="predicted latency (ms)", ylabel="MFLOPs")
        ax.legend(fontsize=7)
    out["pareto"] = png(fig)
    fig, ax = plt.subplots(figsize=(1.6 * len(devices) + 2, 3.4))
    xs = range(len(devices))
    ax.bar([x - 0.2 for x in xs], [d["student_test_top1"] or 0 for d in devices], 0.4,
           label="KD student")
    ax.bar([x + 0.2 for x in xs], [d["ce_top1"] or 0 for d in devices], 0.4,
           label="CE baseline")
    lo = min(v for d in devices for v in (d["student_test_top1"], d["ce_top1"]) if v) \
        if devices else 0
    ax.set(xticks=list(xs), ylabel="test top-1 (%)", ylim=(max(0, lo - 15), 100),
           title="accuracy per device")
    ax.set_xticklabels([d["device"] for d in devices], rotation=20, fontsize=8)
    ax.legend()
    out["accuracy"] = png(fig)
    measured = [d for d in devices if d["measured_p50_ms"]]
    if measured:
        fig, ax = plt.subplots(figsize=(4, 3.6))
        for d in measured:
            ax.plot(d["measured_p50_ms"], d["predicted_ms"], "o")
            ax.annotate(d["device"], (d["measured_p50_ms"], d["predicted_ms"]), fontsize=8)
        top = max(max(d["measured_p50_ms"], d["predicted_ms"]) for d in measured) * 1.2
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set(xlabel="measured p50 (ms)", ylabel="predicted (ms)", title="latency here")
        out["latency"] = png(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    t, n = data["teacher"]["train_time_s"], len(devices)
    ax.bar(["one GTN teacher", f"{n} specialised"], [t, n * t], color=["C2", "C3"])
    ax.set(ylabel="teacher training (s)", title="teacher cost for all devices")
    out["cost"] = png(fig)
    return out
