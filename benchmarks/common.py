"""Shared by the benchmark scripts: results files and the conditions they ran under."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def conditions() -> dict:
    from gtn_deploy.machine import cpu_model

    cpu = cpu_model()
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_results(name: str, payload: dict) -> Path:
    from gtn_deploy.io_utils import atomic_write_json

    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"conditions": conditions(), **payload})
    return path


def percentiles(values: list[float]) -> dict:
    from gtn_deploy.stats import percentile  # the one method of every timing loop

    ordered = sorted(values)
    return {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90), "min": ordered[0],
            "max": ordered[-1], "n": len(ordered)}


def mean_std(values: list[float]) -> str:
    """"mean ± std" of a result over seeds ("-" when there is none yet)."""
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def elapsed_log(start: float):
    """print() with the seconds since ``start``, flushed: long runs log as they go."""

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", flush=True)

    return log


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def settings_key(settings: dict) -> str:
    """A short hash of every setting that changes a result: names a cached run folder, so a
    changed setting can never reuse a stale run."""
    import hashlib
    import json

    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
