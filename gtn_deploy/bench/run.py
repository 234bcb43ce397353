"""``gtnd bench``: verify a bundle, check the device, time it, compare with the prediction."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from gtn_deploy import machine as envinfo
from gtn_deploy.bench.runners import check_backend, default_precision, make_runner
from gtn_deploy.errors import BenchError, BundleError, GtnError, UsageError
from gtn_deploy.manifest import BundleManifest, load_manifest, open_bundle, verify_files
from gtn_deploy.profiles import load_profile
from gtn_deploy.timing import (check_loop, default_rounds, noise_warning, tail_ratio, round_range,
                               time_calls, unsettled)

RESULT_KIND = "gtn_deploy.bench_result"
RESULT_SCHEMA_VERSION = 1


def target_problem(device_id: str | None) -> str | None:
    """Why this machine is not the target device ``device_id`` (a bundle's), or None
    (unknown profiles pass)."""
    if not device_id or device_id == "local":
        return None
    try:
        profile = load_profile(device_id)
    except GtnError:
        return None  # a profile this install does not ship cannot be checked, nor refused
    facts = envinfo.machine_facts()
    if profile.matches_target(**facts):
        return None
    seen = ", ".join(v for v in facts.values() if v)
    return f"this machine ({seen}) is not a '{device_id}' target"


def budget_verdict(manifest: BundleManifest, timing: dict,
                   on_target: bool) -> dict[str, Any] | None:
    """The measured percentile the device's budget names (p90) against that budget: fits or
    over, with the headroom. None for a bundle that records no budget (older exports)."""
    budget = manifest.budget
    if not budget or not budget.get("latency_ms"):
        return None
    pct = str(budget.get("percentile") or "p90").lower()
    measured = timing.get(f"{pct}_ms")
    if measured is None:
        return None
    headroom = 1 - measured / budget["latency_ms"]
    verdict = {"budget_ms": budget["latency_ms"], "percentile": pct,
               "source": budget.get("source"), f"measured_{pct}_ms": round(measured, 5),
               "fits": headroom >= 0, "headroom": round(headroom, 4), "on_target": on_target}
    rounds = timing.get("round_p90_ms") or []
    if pct == "p90" and len(rounds) > 1:
        verdict["round_p90_range_ms"] = list(round_range(rounds))
        verdict["unsettled"] = unsettled(rounds, budget["latency_ms"])
    return verdict


def budget_line(v: dict | None) -> str | None:
    """``budget: p90 0.214 ms vs 0.528 ms (plan): fits, 59% headroom``, or None."""
    if not v:
        return None
    pct = v["percentile"]
    verdict = (f"fits, {v['headroom']:.0%} headroom" if v["fits"]
               else f"OVER by {-v['headroom']:.0%}")
    if v.get("unsettled"):
        lo, hi = v["round_p90_range_ms"]
        verdict += (f"; unsettled: the rounds' p90 ran {lo:.3f}-{hi:.3f} ms, on both sides of "
                    "the budget (rerun on a quiet machine)")
    where = "" if v["on_target"] else " (not measured on the target device)"
    return (f"  budget: {pct} {v[f'measured_{pct}_ms']:.3f} ms vs {v['budget_ms']:.3g} ms "
            f"({v['source']}): {verdict}{where}")


def verdict_lines(r: dict) -> list[str]:
    """A result's prediction and budget lines, shared by the local and the remote summary."""
    lines = []
    p = r.get("prediction")
    if p:
        note = "" if p["comparable"] else (
            f" (predicted for {p['predicted_for']['precision']} batch "
            f"{p['predicted_for']['batch_size']} on {p['predicted_for']['device']})")
        lines.append(f"  predicted {p['predicted_ms']:.3f} ms (tier {p['tier']}) vs measured "
                     f"p50 {p['measured_p50_ms']:.3f} ms: error {p['error']:+.1%}"
                     f"{'' if p['within_band'] else ', outside the band'}{note}")
    budget = budget_line(r.get("budget"))
    return lines + ([budget] if budget else [])


def compare_prediction(manifest: BundleManifest, p50_ms: float, precision: str,
                       batch_size: int) -> dict[str, Any] | None:
    """Predicted vs measured p50; error = predicted / measured - 1."""
    pred = manifest.latency_prediction
    if not pred or not pred.get("latency_ms"):
        return None
    out = {"predicted_ms": pred["latency_ms"], "measured_p50_ms": round(p50_ms, 5),
           "error": round(pred["latency_ms"] / p50_ms - 1, 4),
           "within_band": bool(pred.get("low_ms", 0) <= p50_ms <= pred.get("high_ms", np.inf)),
           "tier": pred.get("tier"), "predicted_for": {
               k: pred.get(k) for k in ("device", "precision", "batch_size")}}
    out["comparable"] = (pred.get("precision") == precision
                         and int(pred.get("batch_size") or 1) == batch_size)
    return out


def _preflight(bundle_dir: Path, manifest: BundleManifest, force: bool) -> list[str]:
    """Hash and target checks: raise unless ``force``; return what was overridden."""
    forced = []
    problems = verify_files(bundle_dir)
    if problems:
        msg = f"bundle {bundle_dir}: {problems[0]}" + (
            f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        if not force:
            raise BundleError(f"{msg}; --force runs anyway")
        forced += problems
    wrong_device = target_problem(manifest.device_id)
    if wrong_device:
        if not force:
            raise BenchError(f"{wrong_device}; --force runs anyway")
        forced.append(wrong_device)
    return forced


def _input_batch(manifest: BundleManifest, batch_size: int, seed: int = 0) -> np.ndarray:
    inp = manifest.input
    # a dynamic batch dimension is named ("batch"), a fixed one is a number
    first, rest = inp["shape"][0], [int(d) for d in inp["shape"][1:]]
    if not inp.get("dynamic_batch") and batch_size != int(first):
        raise UsageError(f"--batch-size {batch_size}: this bundle's input has a fixed batch of "
                         f"{first} (input.dynamic_batch is false)")
    return np.random.default_rng(seed).standard_normal([batch_size, *rest]).astype(np.float32)


# each runtime thread holds its own buffers: 100,000 of them took 7 GB; past a few per
# core a bench measures contention, not the model
THREADS_PER_CORE = 4


def check_threads(threads: int | None, cores: int) -> None:
    """--threads at most THREADS_PER_CORE x the cores that run the bench."""
    if threads is not None and threads > THREADS_PER_CORE * cores:
        raise UsageError(f"--threads {threads}: more than {THREADS_PER_CORE} per core "
                         f"({cores} cores there, so at most {THREADS_PER_CORE * cores})")


def _check_output(out: Any, manifest: BundleManifest, batch_size: int,
                  bundle_dir: Path) -> None:
    """The model's output has the shape its manifest declares: timing a model that is not
    the one described (1000 classes where the manifest says 10) would measure the wrong
    thing and say nothing. A runner that returns no host array is not checked."""
    shape = getattr(out, "shape", None)
    if shape is None:
        return
    declared = manifest.output.get("shape") or []
    want = [batch_size] + [d if isinstance(d, int) else None for d in declared[1:]]
    got = [int(d) for d in shape]
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        raise BundleError(f"bundle {bundle_dir}: its model outputs {tuple(got)}, the manifest "
                          f"declares {tuple(declared)} (batch {batch_size}); the model is "
                          "not the one the manifest describes")


@contextlib.contextmanager
def _runtime_errors(backend: str, bundle_dir: Path):
    """A model the runtime cannot load or run is a one-line BenchError (runtimes raise their
    own exception types: onnxruntime's InvalidProtobuf, Fail, ...)."""
    try:
        yield
    except GtnError:
        raise
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BenchError(f"bundle {bundle_dir}: {backend} cannot load or run its model "
                         f"({first[:200]})") from None


def bench_bundle(path: str | Path, backend: str = "onnxruntime", batch_size: int = 1,
                 threads: int | None = None, warmup: int = 10, iters: int | None = None,
                 seconds: float | None = None, precision: str | None = None,
                 force: bool = False, rounds: int | None = None) -> dict[str, Any]:
    """Measure one bundle here; return the results document (see ``RESULT_KIND``). The
    timed calls are read as ``rounds`` consecutive rounds (default: ``default_rounds``)."""
    rounds = default_rounds(iters) if rounds is None else rounds
    check_loop(warmup, iters, seconds, rounds)
    if batch_size < 1 or (threads is not None and threads < 1):
        raise UsageError("--batch-size and --threads must be >= 1")
    check_threads(threads, os.cpu_count() or 1)
    with open_bundle(path) as bundle_dir:
        manifest = load_manifest(bundle_dir)
        recommended = manifest.recommended_precision
        if precision is None:
            precision = default_precision(backend, recommended)
        check_backend(backend, precision)
        forced = _preflight(bundle_dir, manifest, force)
        x = _input_batch(manifest, batch_size)
        rss_before = envinfo.peak_rss_mb()
        with _runtime_errors(backend, bundle_dir):
            runner = make_runner(backend, bundle_dir, manifest, precision, batch_size, threads)
            try:
                _check_output(runner.run(x), manifest, batch_size, bundle_dir)
                stats = time_calls(lambda: runner.run(x), warmup, iters, seconds, batch_size,
                                   rounds=rounds)
            finally:
                runner.close()
    info = {k: v for k, v in runner.info.items() if k != "session"}
    ratio = tail_ratio(stats)
    return {
        "schema_version": RESULT_SCHEMA_VERSION, "kind": RESULT_KIND,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "bundle": {"path": str(path), **manifest.identity()},
        "backend": backend, "runtime_version": runner.info.get("runtime_version"),
        "precision": precision, "batch_size": batch_size,
        "threads": threads, "runner": info, "build_s": round(runner.build_s, 4),
        "timing": stats.to_dict(),
        "memory": {"peak_rss_mb": round(envinfo.peak_rss_mb(), 2),
                   "peak_rss_before_build_mb": round(rss_before, 2)},
        "prediction": compare_prediction(manifest, stats.p50_ms, precision, batch_size),
        "budget": budget_verdict(manifest, stats.to_dict(),
                                 on_target=target_problem(manifest.device_id) is None),
        "noise": {"p99_over_p50": None if ratio is None else round(ratio, 3),
                  "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg")
                  else None, "warning": noise_warning(stats)},
        "forced": forced,
        "environment": envinfo.environment(threads, backend),
    }
