"""The report's plots as PNG bytes: accuracy against latency, latency here, teacher cost.

matplotlib is optional (the ``train`` extra): without it there are no plots and the tables
still tell it all.
"""

from __future__ import annotations

import io
import statistics
from typing import Any

BUDGET_COLOR, OVER_FILL = "#c0392b", "#fbeaea"


def seeds_mean_std(values: list[float] | None, single: float | None) -> tuple[float | None,
                                                                              float | None]:
    """Mean and sample std over seeds where a row has several, else the single value."""
    if values and len(values) > 1:
        return statistics.fmean(values), statistics.stdev(values)
    return (values[0] if values else single), None


def accuracy_points(d: dict[str, Any]) -> dict[str, float | None]:
    """One device's points: latency as a share of its p90 budget, KD and CE test top-1."""
    budget = d["budget_ms"]
    kd, kd_err = seeds_mean_std(d.get("student_test_top1_seeds"), d["student_test_top1"])
    ce, ce_err = seeds_mean_std(d.get("ce_top1_seeds"), d["ce_top1"])
    p90 = d.get("measured_p90_ms")
    return {"x": d["predicted_ms"] / budget if d["predicted_ms"] else None,
            "measured_x": p90 / budget if p90 else None,
            "kd": kd, "kd_err": kd_err, "ce": ce, "ce_err": ce_err}


def render_plots(data: dict[str, Any]) -> dict[str, bytes]:
    """PNG bytes by name ({} when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    plt.rcParams.update({"font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    out = {"accuracy": _png(plt, _accuracy(plt, data))}
    if any(d.get("measured_p50_ms") for d in data["devices"]):
        out["latency"] = _png(plt, _latency(plt, data["devices"]))
    out["cost"] = _png(plt, _cost(plt, data))
    return out


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _accuracy(plt, data: dict[str, Any]):
    """One panel per device (they share the accuracy axis): its student, CE baseline and
    budget line; per-device panels because planned students sit at similar budget shares."""
    devices = [d for d in data["devices"] if accuracy_points(d)["x"] is not None]
    cols = 1 if len(devices) <= 1 else 2
    rows = max(1, -(-len(devices) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.6, 0.7 + 2.4 * rows), sharey=True,
                             squeeze=False)
    teacher = data["teacher"].get("test_top1")
    ys = [teacher] if teacher is not None else []
    for ax, d in zip(axes.flat, devices):
        ys += _accuracy_panel(ax, d, teacher)
    for ax in list(axes.flat)[len(devices):]:
        ax.set_visible(False)
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 100.0)
    pad = max(0.5, (hi - lo) * 0.12)
    axes[0][0].set_ylim(lo - pad, hi + pad)
    for row in axes:
        row[0].set_ylabel("test top-1 (%)")
    fig.legend(handles=_accuracy_legend(data, teacher), loc="lower center", ncol=4,
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("accuracy against latency", x=0.02, ha="left", fontsize=10,
                 fontweight="bold")
    fig.tight_layout(rect=(0, 0.13 / rows, 1, 1))
    return fig


def _accuracy_panel(ax, d: dict[str, Any], teacher: float | None) -> list[float]:
    p, budget = accuracy_points(d), d["budget_ms"]
    pred, kd, ce = p["x"] * budget, p["kd"], p["ce"]
    right = max(budget, pred, (p["measured_x"] or 0) * budget) * 1.3
    ax.axvspan(budget, right, color=OVER_FILL, zorder=0)
    ax.axvline(budget, color=BUDGET_COLOR, ls="--", lw=1.1)
    if teacher is not None:
        ax.axhline(teacher, color="grey", ls="--", lw=0.8)
    if ce is not None:
        ax.plot([pred, pred], [ce, kd], color="C0", lw=1, alpha=0.5)
        ax.errorbar(pred, ce, yerr=p["ce_err"], fmt="o", mfc="white", mec="C1", ecolor="C1",
                    ms=7, capsize=3)
        ax.annotate(f"KD {kd - ce:+.2f}", (pred, (kd + ce) / 2), xytext=(-6, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=8,
                    color="C0")
    ax.errorbar(pred, kd, yerr=p["kd_err"], fmt="*", color="C0", ms=13, capsize=3)
    if p["measured_x"]:
        ax.plot([pred, p["measured_x"] * budget], [kd, kd], ":", color="C2", lw=1)
        ax.plot(p["measured_x"] * budget, kd, "D", mfc="white", mec="C2", ms=6)
    ax.set_xlim(0, right)
    ax.set_title(f"{d['device']} (budget {budget:.3g} ms)", fontsize=9)
    ax.set_xlabel("predicted ms", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return [v for v in (kd, ce) if v is not None]


def _accuracy_legend(data: dict[str, Any], teacher: float | None) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    points = [accuracy_points(d) for d in data["devices"]]
    seeded = any(p["kd_err"] or p["ce_err"] for p in points)
    handles = [Line2D([], [], marker="*", color="C0", ls="", ms=10,
                      label="KD student" + (" (mean, std over seeds)" if seeded else "")),
               Line2D([], [], marker="o", mfc="white", mec="C1", ls="", label="CE baseline"),
               Line2D([], [], color=BUDGET_COLOR, ls="--", label="p90 budget"),
               Patch(color=OVER_FILL, label="over budget")]
    if any(p["measured_x"] for p in points):
        handles.append(Line2D([], [], marker="D", mfc="white", mec="C2", ls="",
                              label="measured p90 here"))
    if teacher is not None:
        handles.append(Line2D([], [], color="grey", ls="--", label="GTN teacher"))
    if not seeded:
        handles.append(Line2D([], [], ls="", label="one seed: no error bars"))
    return handles


def _latency(plt, devices: list[dict[str, Any]]):
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    measured = [d for d in devices if d.get("measured_p50_ms")]
    top = 0.0
    for i, d in enumerate(devices):
        if d not in measured:
            continue
        for key, marker in (("measured_p50_ms", "o"), ("measured_p90_ms", "D")):
            if d.get(key):
                ax.plot(d[key], d["predicted_ms"], marker, color=f"C{i}", mfc="white"
                        if marker == "D" else f"C{i}", label=f"{d['device']} {key[9:12]}")
                top = max(top, d[key], d["predicted_ms"], d["budget_ms"])
    top *= 1.15
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    for i, d in enumerate(measured):
        ax.axvline(d["budget_ms"], color=BUDGET_COLOR, ls=":", lw=1,
                   label="p90 budget" if i == 0 else None)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="measured here (ms)", ylabel="predicted (ms)")
    ax.set_title("latency: predicted vs measured", loc="left", fontsize=10, fontweight="bold")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def _cost(plt, data: dict[str, Any]):
    """The specialised teachers are an estimate (N x the GTN time): hatched and labelled."""
    t, n = data["teacher"]["train_time_s"], len(data["devices"])
    scale, unit = (60.0, "min") if n * t >= 300 else (1.0, "s")
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    bars = ax.bar([0, 1], [t / scale, n * t / scale], width=0.55,
                  color=["#2e8b57", "white"], edgecolor=["#2e8b57", "#b03a2e"], lw=1.2)
    bars[1].set_hatch("///")
    ax.bar_label(bars, labels=[f"{t / scale:.0f} {unit} (measured)",
                               f"{n * t / scale:.0f} {unit} (estimate)"], fontsize=8, padding=2)
    ax.set_xticks([0, 1], ["one GTN teacher", f"{n} specialised teachers\n(estimate)"])
    ax.set_ylim(0, n * t / scale * 1.2)
    ax.set_ylabel(f"teacher training ({unit})")
    ax.set_title("teacher cost for all devices", loc="left", fontsize=10, fontweight="bold")
    return fig
