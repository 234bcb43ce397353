"""``gtnd calibrate --host user@device[:port]``: calibration measured on another machine.

The subnets are exported here (torch) to ONNX files in a temporary folder. They go, with
time_subnets.py, bundle_io.py (the fingerprint ``gtnd bench --host`` records) and spec.json,
as one tar stream into one ssh connection (``bench.remote``: a fresh folder there, removed
by a shell trap). time_subnets.py times them by the ``gtn_deploy.rounds`` protocol with python3,
numpy and onnxruntime alone, then runs the first ones under onnxruntime's node profiler
(tier 2, CPU provider only), and prints every timed call, the node times and the device's
fingerprint in one JSON line. The statistics are computed here, by ``gtn_deploy.rounds`` and
``bench.subnets`` themselves, so a remote calibration means what a local one means.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Sequence

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.bench.calibration import Measurement
from gtn_deploy.bench.calibration_runtime import CalibrationRunner
from gtn_deploy.bench.remote import (SshTarget, check_device, pack, parse_output,
                                     remote_command, run_over_ssh)
from gtn_deploy.bench.remote_doc import check_subnet_timing
from gtn_deploy.rounds import RoundPlan, RoundsResult
from gtn_deploy.bench.subnets import SubnetTiming, _block_times, export_all
from gtn_deploy.fingerprint import current_fingerprint
from gtn_deploy.machine import cpu_name
from gtn_deploy.progress import StepProgress

SCRIPT, SPEC = "time_subnets.py", "spec.json"
KIND = "gtn_deploy.subnet_timing"
BUNDLE_IO = Path(__file__).resolve().parents[1] / "export" / "bundle_io.py"
# subnets.profile_interleaved's defaults (a test keeps them equal): calls per profiled
# round, the first PROFILE_WARMUP of them dropped
PER_ROUND, PROFILE_WARMUP = 3, 2
TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class RemoteSite:
    """Where ``gtnd calibrate --host`` measures: the device and the python to run there."""

    target: SshTarget
    remote_python: str = "python3"
    timeout_s: float = TIMEOUT_S

    def record(self) -> dict[str, Any]:
        """What the calibration records about the connection (as ``bench --host``)."""
        return {"host": self.target.label, "remote_python": self.remote_python,
                "host_key_checked": not self.target.insecure_host_key}

    def measure(self, space: Space, archs: Sequence[Arch], threads: int,
                plan: RoundPlan, profile_runs: int, profiled: int, seed: int,
                runner: CalibrationRunner) -> Measurement:
        """Export ``archs`` here, time (and profile the first ``profiled``) there."""
        start = time.perf_counter()
        check_device(self.target, self.remote_python)  # before minutes of exporting
        with tempfile.TemporaryDirectory(prefix="gtnd-calib-") as tmp:
            folder = Path(tmp)
            paths = export_all(space, archs, folder)
            export_s = time.perf_counter() - start
            _write_spec(folder, space, archs, paths, threads, plan, profile_runs, profiled,
                        seed, runner)
            names = sorted(p.name for p in folder.iterdir())
            size_mb = sum((folder / n).stat().st_size for n in names) / 1e6
            then = ", then the node profiler" if profile_runs else ""
            StepProgress(1, description="calibrate").message(  # a plain line (none with -q)
                f"calibrate: sending {len(archs)} subnets ({size_mb:.1f} MB of ONNX) and "
                f"{SCRIPT} to {self.target.label}; measuring there in one ssh connection (no "
                f"live progress: at least {max(plan.min_rounds, 2)} rounds, up to "
                f"{plan.budget_s:g} s{then})")
            command = remote_command(self.remote_python, SCRIPT, [SPEC])
            timeout_s = min(self.timeout_s, calibrate_timeout_s(size_mb, len(archs), plan,
                                                                profile_runs * profiled))
            with pack(folder, names) as tar:
                stdout = run_over_ssh(self.target, command, tar, timeout_s)
        doc = check_subnet_timing(self.target.label, parse_output(self.target, stdout, KIND,
                                                                  SCRIPT),
                                  len(archs), profiled if profile_runs else 0)
        timings, res = _timings(self.target, doc, archs, profiled if profile_runs else 0)
        info = {"seconds": time.perf_counter() - start, "export_s": export_s,
                "timing_s": res.seconds, "rounds_max": max(len(r) for r in res.rounds),
                "rounds_min": min(len(r) for r in res.rounds), "stop": res.stop,
                "plan": dataclasses.asdict(plan)}
        threads_used = threads if runner.runtime == "onnxruntime" else None
        return Measurement(timings, info, fingerprint(doc, runner, threads_used),
                           environment(doc, runner, threads_used))


def calibrate_timeout_s(size_mb: float, n_models: int, plan: RoundPlan,
                        profiled_calls: int) -> float:
    """A bound on the exchange that scales with the work: sending at a slow 1 MB/s, 20 s to
    build each session, the rounds' time budget twice over (a round started in time may
    finish late) and 1 s per profiled call."""
    return 60.0 + size_mb + 20.0 * n_models + 2 * plan.budget_s + profiled_calls


def _write_spec(folder: Path, space: Space, archs, paths, threads: int,
                plan: RoundPlan, profile_runs: int, profiled: int, seed: int,
                runner: CalibrationRunner) -> None:
    """spec.json and the scripts beside the subnets."""
    models = [{"file": p.name, "input_shape": [1, space.task.in_channels, a.resolution,
                                               a.resolution]} for a, p in zip(archs, paths)]
    spec = {"models": models, "threads": threads, "provider": runner.provider, "seed": seed,
            "plan": dataclasses.asdict(plan),
            "profile": {"runs": profile_runs, "models": profiled, "per_round": PER_ROUND,
                        "warmup": PROFILE_WARMUP}}
    (folder / SPEC).write_text(json.dumps(spec))
    shutil.copyfile(Path(__file__).with_name(SCRIPT), folder / SCRIPT)
    shutil.copyfile(BUNDLE_IO, folder / BUNDLE_IO.name)


def _timings(target: SshTarget, doc: dict, archs: Sequence[Arch], profiled: int
             ) -> tuple[list[SubnetTiming], RoundsResult]:
    """The device's raw calls turned into timings by the local protocol's own code."""
    rounds, nodes = doc["rounds"], doc["nodes"]  # checked by check_subnet_timing
    res = RoundsResult(rounds, doc["order"], doc["stop"], doc["timing_s"])
    timings = [SubnetTiming(a, res.latency_ms(i), [float(median(r)) for r in rounds[i]],
                            spread=res.spread(i)) for i, a in enumerate(archs)]
    for t, per_node in zip(timings, nodes):  # rebuilt as the profiler's events
        events = [{"cat": "Node", "name": f"{name}_kernel_time", "dur": d}
                  for name, durs in per_node for d in durs]
        t.block_us = _block_times(events, PROFILE_WARMUP, PROFILE_WARMUP + PER_ROUND)
    return timings, res


def fingerprint(doc: dict, runner: CalibrationRunner, threads: int | None) -> dict[str, Any]:
    """The calibration fingerprint of the device: ``current_fingerprint``'s keys with every
    machine-dependent one (runtime version, CPU, architecture) taken from the device."""
    machine = doc["machine"].get("machine") or ""
    fp = current_fingerprint(threads, runner.precision, runner.runtime, runner.provider)
    fp.update(runtime_version=doc["runtime_version"], machine=machine,
              cpu_model=cpu_name(doc.get("cpuinfo") or {}, doc.get("processor") or "", machine))
    return fp


def environment(doc: dict, runner: CalibrationRunner, threads: int | None) -> dict[str, Any]:
    """The device as bundle_io.fingerprint describes it (CPU, OS, kernel, python, numpy and
    onnxruntime versions, ``nvpmodel -q``), with how it ran."""
    return {**doc["machine"], "threads": threads, "backend": runner.runtime,
            "provider": doc.get("provider"), "load_avg_1m": doc.get("load_avg_1m")}
