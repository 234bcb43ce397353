"""The conditions a measurement ran under: CPU, OS, runtimes, GPU, Jetson power mode.

Standard library only (onnxruntime and tensorrt are looked up, never required), so the cost
model can ask for the current machine's fingerprint without pulling anything heavy.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def cpu_model() -> str:
    """A human CPU name: x86 'model name', Arm 'Model'/'Hardware', else platform."""
    return cpu_name(cpuinfo(), platform.processor(), platform.machine())


def cpu_name(info: dict[str, str], processor: str, machine: str) -> str:
    """``cpu_model``'s rule on any machine's first /proc/cpuinfo processor (a device's over
    ssh, too), so a fingerprint names a CPU the same wherever it was taken."""
    for key in ("model name", "cpu model", "hardware", "model"):
        if info.get(key):
            return info[key]
    if info.get("cpu part"):  # Arm cores without a model name: the part number identifies them
        return f"arm-implementer-{info.get('cpu implementer', '?')}-part-{info['cpu part']}"
    return processor or machine


def device_model() -> str:
    """Board name from the device tree (Jetson, Raspberry Pi); empty on PCs."""
    return _read("/proc/device-tree/model")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cores_text(count: int | None) -> str:
    """'1 core', '2 cores' ('? cores' when unknown): how a machine line names its cores."""
    return f"{count} core" if count == 1 else f"{'?' if count is None else count} cores"


def cpu_flags() -> set[str]:
    info = cpuinfo()
    return set((info.get("flags") or info.get("features") or "").split())


def cpu_max_mhz() -> float | None:
    """Max clock from cpufreq, else the current MHz from /proc/cpuinfo."""
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz.isdigit():
        return int(khz) / 1e3
    try:
        return float(cpuinfo().get("cpu mhz", ""))
    except ValueError:
        return None


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (ru_maxrss is KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def _run(cmd: list[str], timeout: float = 5.0) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def gpu_info() -> list[dict[str, str]]:
    """One entry per NVIDIA GPU from nvidia-smi (empty when there is none)."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm",
                "--format=csv,noheader"])
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            gpus.append(dict(zip(("name", "driver", "memory", "sm_clock"), parts)))
    return gpus


def jetson_info() -> dict[str, Any] | None:
    """Power mode (nvpmodel -q) and clocks from sysfs on a Jetson; None elsewhere."""
    release = _read("/etc/nv_tegra_release")
    if not release and "jetson" not in device_model().lower():
        return None
    clocks = {}
    for path in sorted(Path("/sys/devices").glob("*gpu*/devfreq/*/cur_freq")):
        clocks[f"gpu:{path.parent.name}"] = _read(path)
    for path in sorted(Path("/sys/devices/system/cpu").glob("cpu*/cpufreq/scaling_cur_freq")):
        clocks[path.parents[1].name] = _read(path)
    emc = _read("/sys/kernel/debug/bpmp/debug/clk/emc/rate")
    if emc:
        clocks["emc"] = emc
    return {"l4t_release": release.splitlines()[0] if release else "",
            "power_mode": _run(["nvpmodel", "-q"]).replace("\n", " | "), "clocks_khz": clocks}


def onnxruntime_info() -> dict[str, Any] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def tensorrt_version() -> str | None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt

    return str(tensorrt.__version__)


def machine_facts() -> dict[str, str]:
    """What a profile's ``target`` is matched against."""
    gpus = gpu_info()
    return {"machine": platform.machine(), "cpu_model": cpu_model(),
            "gpu_name": gpus[0]["name"] if gpus else "", "device_model": device_model()}


def environment(threads: int | None = None, backend: str | None = None) -> dict[str, Any]:
    """Everything a result should carry to be read and reproduced later."""
    facts = machine_facts()
    env: dict[str, Any] = {
        **facts,
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_usable": usable_cores(),
        "cpu_max_mhz": cpu_max_mhz(),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "backend": backend,
        "onnxruntime": onnxruntime_info(),
        "gpus": gpu_info(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if backend == "tensorrt":
        env["tensorrt"] = tensorrt_version()
    if backend == "torch" and "torch" in sys.modules:
        env["torch"] = sys.modules["torch"].__version__
    jetson = jetson_info()
    if jetson:
        env["jetson"] = jetson
    return env
