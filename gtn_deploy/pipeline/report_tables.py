"""The report's tables, verdicts and notes, made from the report data (the dict that
report.json holds): report.md, report.html and the terminal summary all show these."""

from __future__ import annotations

from typing import NamedTuple

from gtn_deploy.errors import GtnError
from gtn_deploy.profiles import load_profile
from gtn_deploy.timing import unsettled


def _fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


class Cell(NamedTuple):
    """A table cell; ``kind`` styles it in HTML (arch, path, num, fits, over), ``href``
    makes it a link (relative to the report)."""
    text: str
    kind: str = ""
    href: str | None = None


def verdict_table(data: dict) -> tuple[list[str], list[list[Cell]]]:
    """Does each student fit its device, and what did KD add over plain CE?"""
    header = ["device", "student (arch)", "budget p90 ms", "predicted ms",
              "measured p50 / p90 ms", "verdict", "test top-1 % (KD)", "CE baseline %",
              "KD gain"]
    rows = []
    for d in data["devices"]:
        verdict = budget_verdict(d)
        rows.append([
            Cell(d["device"] + ("" if d["in_teacher_pool"] else " (added later)")),
            Cell(d["arch"], "arch"), Cell(_fmt(d["budget_ms"], ".3g"), "num"),
            Cell(_fmt(d["predicted_ms"], ".3g"), "num"),
            Cell(f"{_fmt(d['measured_p50_ms'], '.3g')} / "
                 f"{_fmt(d.get('measured_p90_ms'), '.3g')}", "num"),
            Cell(verdict, verdict.split(" ")[0].lower()),
            Cell(_fmt(d["student_test_top1"]), "num"), Cell(_fmt(d["ce_top1"]), "num"),
            Cell(_fmt(d["kd_gain"], "+.2f"), "num")])
    if any(d.get("vanilla_top1") is not None for d in data["devices"]):
        header += ["KD from vanilla teacher %", "GTN gain"]
        for row, d in zip(rows, data["devices"]):
            row += [Cell(_fmt(d.get("vanilla_top1")), "num"),
                    Cell(_fmt(d.get("gtn_gain"), "+.2f"), "num")]
    return header, rows


def bundle_table(data: dict) -> tuple[list[str], list[list[Cell]]]:
    header = ["device", "bundle", "runtime", "latency tier", "MFLOPs", "params",
              "bundle fp32 %", "int8 %", "recommended"]
    rows = [[Cell(d["device"]), Cell(bundle_link(d), "path", bundle_link(d) + "/"),
             Cell(runtime_name(d)), Cell(str(d["tier"]), "num"),
             Cell(_fmt(d["mflops"], ".1f"), "num"),
             Cell(f"{d['params'] / 1e3:.0f}k", "num"), Cell(_fmt(d["fp32_top1"]), "num"),
             Cell(_fmt(d["int8_top1"]), "num"), Cell(d["recommended_precision"])]
            for d in data["devices"]]
    return header, rows


def bundle_link(d: dict) -> str:
    """The bundle folder relative to the report (older report.json files hold only the
    absolute path, whose stages/... tail is the same)."""
    if d.get("bundle_rel"):
        return d["bundle_rel"]
    cut = d["bundle"].replace("\\", "/").rfind("/stages/")
    return d["bundle"][cut + 1:] if cut >= 0 else d["bundle"]


def runtime_name(d: dict) -> str:
    if d.get("runtime"):
        return d["runtime"]
    try:  # an older report.json: the device's profile says
        return load_profile(d["device"]).runtime.name
    except GtnError:
        return "onnxruntime"


def next_steps(d: dict) -> list[str]:
    """Shell lines to copy: get the bundle onto its device, build, run and time it there."""
    trt = runtime_name(d).lower() == "tensorrt"
    run = "python3 run_trt.py" if trt else "python3 run_onnx.py"
    bench = f"gtnd bench .{' --backend tensorrt' if trt else ''} --out bench.json"
    build = ["./build_engine.sh   # the TensorRT engine, into build/"] if trt else []
    if d.get("runs_here", d.get("measured_p50_ms") is not None):  # the device is here
        return [f"cd {bundle_link(d)}", *build, run, bench]
    host, folder = f"user@{d['device']}", f"gtn-{d['device']}"
    return [f"scp -r {bundle_link(d)} \\\n    {host}:{folder}", f"ssh {host}",
            f"cd {folder}", *build, run, bench]


def budget_verdict(d: dict) -> str:
    """Fits or over the device's p90 budget: measured p90 where the bundle ran here, else
    the prediction; with the headroom left. A measurement whose rounds disagree is
    unsettled, and one with a noisy tail (p99 over twice p50) says so."""
    measured = bool(d.get("measured_p90_ms"))
    basis, value = (("measured p90", d["measured_p90_ms"]) if measured
                    else ("predicted", d["predicted_ms"]))
    if value is None:
        return "unknown"
    noisy = "; noisy run" if measured and d.get("measured_noisy") else ""
    rounds = d.get("measured_p90_range_ms") if measured else None
    if rounds and unsettled(rounds, d["budget_ms"]):
        return f"unsettled ({basis}, rounds {rounds[0]:.3g}-{rounds[1]:.3g} ms{noisy})"
    headroom = 1 - value / d["budget_ms"]
    return (f"fits ({basis}, {headroom:.0%} headroom{noisy})" if headroom >= 0
            else f"OVER ({basis}, {-headroom:.0%} over{noisy})")


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
    if any(d.get("gtn_gain") is not None for d in data["devices"]):
        lines.append("KD from a vanilla teacher: " + ", ".join(
            f"{d['device']} {_fmt(d.get('vanilla_top1'))} ({_fmt(d.get('gtn_gain'), '+.2f')} "
            "for GTN)" for d in data["devices"]))
    return "\n".join(lines + [kd_verdict(data)] + gtn_verdict(data))


def kd_verdict(data: dict) -> str:
    """One plain sentence: did the teacher help every device's student?"""
    rows = [d for d in data["devices"] if d["kd_gain"] is not None]
    if not rows:
        return "No CE baseline was trained (--baseline none): the KD gain is not known."
    lost = [d for d in rows if d["kd_gain"] < 0]
    won = [d for d in rows if d["kd_gain"] >= 0]
    if not lost:
        low, high = min(d["kd_gain"] for d in rows), max(d["kd_gain"] for d in rows)
        span = f"{low:+.2f}" if low == high else f"{low:+.2f} to {high:+.2f}"
        return f"KD beat the CE baseline on every device (gain {span} points of test top-1)."
    where = "there" if len(lost) == 1 else "on those devices"
    verdict = ("KD LOST to plain CE on " + ", ".join(
        f"{d['device']} ({d['kd_gain']:+.2f} points)" for d in lost)
        + f": {where} the teacher did not help.")
    if won:
        verdict += " It beat CE on " + ", ".join(
            f"{d['device']} ({d['kd_gain']:+.2f})" for d in won) + "."
    return verdict


def gtn_verdict(data: dict) -> list[str]:
    """With ``--baseline vanilla``: did the generic teacher teach better than a vanilla one
    of the same network and epochs? (One seed: the sentence says so.)"""
    rows = [d for d in data["devices"] if d.get("gtn_gain") is not None]
    if not rows:
        return []
    gains = ", ".join(f"{d['device']} {d['gtn_gain']:+.2f}" for d in rows)
    won = sum(d["gtn_gain"] > 0 for d in rows)
    return [f"GTN teacher against a vanilla teacher (same network, epochs and data): students "
            f"{gains} points of test top-1; better on {won} of {len(rows)} device"
            f"{'' if len(rows) == 1 else 's'}. One seed per device: differences under about "
            "a point are within seed-to-seed noise (benchmarks/results/kd_power.md)."]


def cost_rows(data: dict) -> list[list[str]]:
    """One GTN teacher vs one specialised (SFTN-style) teacher per device."""
    t, n = data["teacher"]["train_time_s"], len(data["devices"])
    return [["GTN: one teacher for every device", f"{t:.0f} s", f"{t:.0f} s"],
            [f"specialised: one teacher per device (N = {n})", f"{t:.0f} s each (estimate)",
             f"{n * t:.0f} s"]]


def teacher_line(data: dict) -> str:
    t = data["teacher"]
    return (f"One GTN teacher ({t['name']}, {t['epochs']} epoch{'' if t['epochs'] == 1 else 's'}, "
            f"sampler {t['sampler']}, "
            f"conditioned on the planned students of {', '.join(t['pool_devices'])}): "
            f"val top-1 {t['val_top1']:.2f}%, test top-1 {t['test_top1']:.2f}%, "
            f"trained in {t['train_time_s']:.0f} s.")


def settings_line(data: dict) -> str:
    return "Settings: " + ", ".join(f"{k} {v}" for k, v in data["settings"].items()) + "."


ACCURACY_NOTE = (
    "Test top-1 (KD) and the CE baseline are on the whole test split in PyTorch; the bundle's "
    "fp32 and int8 columns are the exported ONNX models in onnxruntime on bundle_eval_images "
    "test images. Predicted latency is for the device (from its profile); measured only where "
    "the bundle's target is this machine. The verdict uses the measured p90 where there is "
    "one, else the prediction; it is unsettled where the bench's consecutive rounds put their "
    "p90 on both sides of the budget (the machine's load decided, not the model), and marked "
    "a noisy run where the bench's p99 was over twice its p50.")
PLOT_NOTE = (
    "One panel per device, all on the same accuracy axis: the star is the KD student at its "
    "predicted latency, the circle the same architecture trained with plain CE (the line "
    "between them is what KD added), the dashed red line the device's p90 budget, and a "
    "diamond the measured p90 where the bundle ran here.")
STEPS_NOTE = (
    "Next steps, from this report's folder (bundle links are relative to it). `gtnd bench` "
    "needs gtn_deploy's light core on the device (numpy and onnxruntime, no torch); its "
    "bench.json is the measured p90 to set against the budget.")
COST_NOTE = ("The specialised teachers' cost is an estimate: it assumes one costs what the "
             "GTN teacher did (`benchmarks/kd_pool.py` measures both).")


def render_markdown(data: dict, plot_names: list[str]) -> str:
    def plot(name: str, alt: str) -> list[str]:
        return [f"![{alt}]({name}.png)", ""] if name in plot_names else []

    lines = [f"# gtn_deploy pipeline report: {data['task']}", "", settings_line(data), "",
             teacher_line(data), "", "## Verdicts: does each student fit its device?", "",
             _table(*verdict_table(data)), "", kd_verdict(data), "",
             *[line + "\n" for line in gtn_verdict(data)], ACCURACY_NOTE, "",
             *plot("accuracy", "accuracy against latency"), PLOT_NOTE, "",
             *plot("latency", "predicted against measured latency"),
             "## Bundles and next steps", "", _table(*bundle_table(data)), "", STEPS_NOTE, ""]
    for d in data["devices"]:
        lines += [f"**{d['device']}**", "", "```sh", *next_steps(d), "```", ""]
    lines += ["## Teacher cost", "",
              _table(["teachers", "training time", "total for the devices"],
                     [[Cell(c) for c in r] for r in cost_rows(data)]), "",
              *plot("cost", "teacher cost"), COST_NOTE, "", "## Wall time per stage", "",
              _table(["stage", "seconds"], stage_rows(data)), ""]
    return "\n".join(lines)


def stage_rows(data: dict) -> list[list[Cell]]:
    return [[Cell(s["stage"]), Cell(f"{s['seconds']:.1f}", "num")] for s in data["stages"]]


def _table(header: list[str], rows: list[list[Cell]]) -> str:
    def cell(c: Cell) -> str:
        # Arch summaries use '|' between stages: escape it inside Markdown cells.
        text = c.text.replace("|", "\\|")
        return f"[{text}]({c.href})" if c.href else text

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])
