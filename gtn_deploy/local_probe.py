"""A short probe of this machine's onnxruntime CPU speed, for the ``local`` profile (0.1 s
on the 2-core VM it was written on; its rounds stop after 1.5 s at most).

Tier 0 of ``local`` divides FLOPs by a peak read from /proc/cpuinfo and multiplies by
efficiency seeds that fit no machine in particular (on the 2-core VM this was written on,
2.3x too slow: tier-0 MAPE 129% on 60 held-out subnets; 5% with the probe). The probe times a few operators of the shapes the
spaces' blocks run, through onnxruntime on one intra-op thread (calibration's and the
latency benchmark's default), and turns them into the profile's figures:

- ``invoke_us``: one call of a one-node model; ``kernel_us``: each further node of a chain
  of 17 tiny Relus.
- ``bandwidth_gbs``: bytes moved per second by an Add of two 144x14x14 tensors.
- ``gflops`` per op class: a 3x3 conv (16->16, 28x28), a 1x1 conv (24->144, 14x14) and a
  5x5 depthwise conv (144, 14x14), less one kernel's overhead.

Timing follows ``gtn_deploy.rounds`` (interleaved rounds, p10 of the calls). The models are
written as ONNX bytes here (a few protobuf fields), so the probe needs only numpy and
onnxruntime, the light core. The result is cached per machine and runtime under
``$XDG_CACHE_HOME/gtn_deploy/`` (default ``~/.cache``); ``GTND_LOCAL_PROBE=off`` turns the
probe off (the test suite does, so no test depends on this machine's speed).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from gtn_deploy import machine as envinfo
from gtn_deploy.io_utils import atomic_write_json
from gtn_deploy.rounds import RoundPlan, round_timer, run_rounds
from gtn_deploy.runtimes import RUNTIMES

log = logging.getLogger(__name__)

PROBE_VERSION = 1
PROBE_THREADS = 1
CHAIN = 17  # Relu nodes in the kernel-overhead model
# Figures outside these bounds are not believed (a broken clock, a stalled run): clamped.
BOUNDS = {"invoke_us": (0.5, 5000.0), "kernel_us": (0.05, 500.0),
          "bandwidth_gbs": (0.1, 2000.0), "gflops": (0.01, 1e4)}

# -- ONNX bytes without the onnx package (protobuf wire format, the few fields used) -------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, shape: Sequence[int]) -> bytes:
    dims = b"".join(_field(1, _field(1, d)) for d in shape)  # Dimension.dim_value
    tensor = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor))  # name, TypeProto.tensor_type


def _initializer(name: str, array: np.ndarray) -> bytes:
    dims = b"".join(_field(1, d) for d in array.shape)
    return dims + _field(2, 1) + _field(8, name) + _field(9, array.astype("<f4").tobytes())


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], **ints: Any) -> bytes:
    attrs = b""
    for key, value in ints.items():  # AttributeProto: name, i (INT=2) or ints (INTS=7)
        if isinstance(value, int):
            attrs += _field(5, _field(1, key) + _field(3, value) + _field(20, 2))
        else:
            attrs += _field(5, _field(1, key) + b"".join(_field(8, v) for v in value)
                            + _field(20, 7))
    return (b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs)
            + _field(4, op) + attrs)


def onnx_model(nodes: Sequence[bytes], inputs: dict[str, Sequence[int]],
               outputs: dict[str, Sequence[int]],
               initializers: dict[str, np.ndarray] | None = None) -> bytes:
    """A serialized ModelProto (IR 8, opset 17) of float32 ``nodes``."""
    graph = (b"".join(_field(1, n) for n in nodes) + _field(2, "probe")
             + b"".join(_field(5, _initializer(k, v)) for k, v in (initializers or {}).items())
             + b"".join(_field(11, _value_info(k, s)) for k, s in inputs.items())
             + b"".join(_field(12, _value_info(k, s)) for k, s in outputs.items()))
    return (_field(1, 8) + _field(2, "gtn_deploy.local_probe") + _field(7, graph)
            + _field(8, _field(1, "") + _field(2, 17)))


def _conv(cin: int, cout: int, k: int, h: int, groups: int = 1) -> tuple[bytes, float]:
    """A same-padded conv + bias + Relu (as the exporter fuses BN into the conv); FLOPs."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32) * 0.1
    nodes = [_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k],
                   pads=[k // 2] * 4, group=groups), _node("Relu", ["c"], ["y"])]
    model = onnx_model(nodes, {"x": (1, cin, h, h)}, {"y": (1, cout, h, h)},
                       {"w": w, "b": np.zeros(cout, np.float32)})
    return model, 2.0 * w.size * h * h


def probe_models() -> dict[str, tuple[bytes, tuple[int, ...], float]]:
    """name -> (ONNX bytes, input shape, FLOPs or bytes moved)."""
    tiny = (1, 8, 4, 4)
    chain = [_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(CHAIN)]
    add_shape = (1, 144, 14, 14)
    models = {
        "invoke": (onnx_model([_node("Relu", ["t0"], ["t1"])], {"t0": tiny}, {"t1": tiny}),
                   tiny, 0.0),
        "chain": (onnx_model(chain, {"t0": tiny}, {f"t{CHAIN}": tiny}), tiny, 0.0),
        "memory": (onnx_model([_node("Add", ["x", "x2"], ["y"])], {"x": add_shape},
                              {"y": add_shape}, {"x2": np.ones(add_shape, np.float32)}),
                   add_shape, 3.0 * 4 * int(np.prod(add_shape))),
    }
    for name, (cin, cout, k, h, groups) in {"conv": (16, 16, 3, 28, 1),
                                            "pointwise": (24, 144, 1, 14, 1),
                                            "depthwise": (144, 144, 5, 14, 144)}.items():
        model, flops = _conv(cin, cout, k, h, groups)
        models[name] = (model, (1, cin, h, h), flops)
    return models


# -- measuring ---------------------------------------------------------------------------------

def measure(threads: int = PROBE_THREADS, budget_s: float = 1.5,
            seed: int = 0) -> dict[str, float]:
    """p10 ms per call of each probe model (``gtn_deploy.rounds`` protocol, a short plan)."""
    plan = RoundPlan(min_rounds=4, max_rounds=12, iters=25, warmup=3, budget_s=budget_s)
    models = probe_models()
    timers = []
    for model, shape, _ in models.values():
        runner = RUNTIMES["onnxruntime"].session(model, threads, "fp32")
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        timers.append(round_timer(lambda r=runner, x=x: r.run(x), plan.warmup, plan.iters))
    res = run_rounds(lambda i: timers[i](), len(timers), plan, random.Random(seed))
    return {name: res.latency_ms(i) for i, name in enumerate(models)}


def _clamp(value: float, key: str) -> float:
    lo, hi = BOUNDS[key]
    return float(min(max(value, lo), hi))


def figures(ms: dict[str, float]) -> dict[str, Any]:
    """The profile's figures from the probe's p10 ms per model, each clamped to ``BOUNDS``."""
    models = probe_models()
    invoke_ms, chain_ms = ms["invoke"], ms["chain"]
    kernel_us = _clamp((chain_ms - invoke_ms) * 1e3 / (CHAIN - 1), "kernel_us")
    invoke_us = _clamp(invoke_ms * 1e3 - kernel_us, "invoke_us")

    def work_s(name: str) -> float:  # the op's own time: less the call and one kernel
        return max(ms[name] * 1e-3 - (invoke_us + kernel_us) * 1e-6, 1e-7)

    gflops = {name: _clamp(models[name][2] / work_s(name) / 1e9, "gflops")
              for name in ("conv", "pointwise", "depthwise")}
    bandwidth = _clamp(models["memory"][2] / work_s("memory") / 1e9, "bandwidth_gbs")
    return {"invoke_us": invoke_us, "kernel_us": kernel_us, "bandwidth_gbs": bandwidth,
            "gflops": gflops}


# -- the cache ---------------------------------------------------------------------------------

def _machine_key() -> dict[str, Any]:
    ort = envinfo.onnxruntime_info() or {}
    return {"probe_version": PROBE_VERSION, "cpu_model": envinfo.cpu_model(),
            "machine": platform.machine(), "cores": envinfo.usable_cores(),
            "onnxruntime": ort.get("version"), "threads": PROBE_THREADS}


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gtn_deploy" / "local_probe.json"


def enabled() -> bool:
    return os.environ.get("GTND_LOCAL_PROBE", "on").strip().lower() not in ("off", "0", "no")


def _read_cache(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    try:  # a hand-edited or truncated cache is measured again, never trusted
        ms = {name: float(data["measured_ms"][name]) for name in probe_models()}
    except (KeyError, TypeError, ValueError):
        return None
    if not all(0 < v < 1e3 for v in ms.values()):  # NaN fails too
        return None
    return {**data, "measured_ms": ms, "figures": figures(ms)}


def probe(refresh: bool = False) -> dict[str, Any] | None:
    """This machine's cached probe, measured now at first use; None where the probe is off
    or cannot run (onnxruntime missing or failing: the profile keeps its seeds)."""
    if not enabled():
        return None
    key, path = _machine_key(), cache_path()
    cached = None if refresh else _read_cache(path, key)
    if cached is not None:
        return cached
    start = time.perf_counter()
    try:
        ms = measure()
    except Exception as exc:  # noqa: BLE001 - a probe never breaks loading a profile
        log.warning("local probe failed (%s); the local profile keeps its seed figures", exc)
        return None
    result = {"key": key, "measured_ms": ms, "figures": figures(ms),
              "seconds": round(time.perf_counter() - start, 2),
              "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cache": str(path)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, result)
    except Exception as exc:  # noqa: BLE001 - an unwritable cache only costs a re-probe
        log.info("local probe not cached (%s)", exc)
    return result
