"""Runtime fingerprints: what a latency calibration is valid for (no torch).

A calibration records the runtime, its version and provider, the precision, threads, the
CPU and the architecture it was measured with; plan compares that with the machine at hand
and warns on a difference.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any
from gtn_deploy.machine import cpu_model
from gtn_deploy.runtimes import runtime_for

# Keys compared between a calibration and the machine at hand; None on either side is skipped.
FINGERPRINT_KEYS = ("runtime", "runtime_version", "provider", "precision", "threads",
                    "graph_optimization", "cpu_model", "machine")


def current_fingerprint(threads: int | None = None, precision: str | None = None,
                        runtime: str = "onnxruntime",
                        provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    """The runtime fingerprint of this machine (what a calibration here would record)."""
    # versions come from package metadata, not imports: asking for a fingerprint stays light

    if runtime == "tensorrt":
        provider = None  # an engine has no execution provider
    return {"runtime": runtime, "runtime_version": runtime_for(runtime).version(),
            "provider": provider, "precision": precision, "threads": threads, "batch_size": 1,
            # onnxruntime's graph optimisation level, recorded as it applies to its sessions
            "graph_optimization": "all" if runtime == "onnxruntime" else None,
            "cpu_model": cpu_model(), "machine": platform.machine()}


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of a fingerprint (file names, reports)."""
    text = json.dumps({k: fingerprint.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def fingerprint_matches(calibration: dict[str, Any] | None,
                        current: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether ``calibration`` was measured under the ``current`` (default: this machine's)
    fingerprint; the reason names the first differing key."""
    if not calibration or not calibration.get("fingerprint"):
        return False, "the profile carries no calibration fingerprint"
    recorded = calibration["fingerprint"]
    if current is None:  # this machine, with the runtime and provider the calibration used
        current = current_fingerprint(runtime=recorded.get("runtime") or "onnxruntime",
                                      provider=recorded.get("provider") or "CPUExecutionProvider")
    diffs = [f"{key}: calibrated {recorded.get(key)!r}, here {current.get(key)!r}"
             for key in FINGERPRINT_KEYS
             if recorded.get(key) is not None and current.get(key) is not None
             and str(recorded.get(key)) != str(current.get(key))]
    if diffs:
        return False, "; ".join(diffs)
    return True, f"fingerprint {fingerprint_id(recorded)} matches"
