"""What a device answers over ssh, checked before anything is computed from it.

The device runs our scripts, but its python, its onnxruntime and the line that comes back
are not ours: a key may be missing, a number NaN, zero or negative, the JSON nested past
the parser's recursion limit. Each answer is checked field by field against what the
scripts print (``bundle_io.print_json``, ``time_subnets.py``, ``device_check.py``); the
first problem is one BenchError line naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gtn_deploy.errors import BenchError

# the largest answer read: a calibration's per-call times and node times fit many times over
MAX_ANSWER_BYTES = 64 << 20
_QUANTILES = ("min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")


class AnswerError(BenchError):
    """A device's answer that does not follow the schema of its script."""


def read_answer(label: str, stdout: str, kind: str, script: str) -> dict[str, Any]:
    """The last JSON line of ``kind`` in ``stdout`` (a login banner or shell chatter may come
    before it), parsed without trusting its depth or size."""
    if len(stdout) > MAX_ANSWER_BYTES:
        raise AnswerError(f"{label}: the device answered {len(stdout) / 1e6:.0f} MB, more "
                          f"than {script}'s result can be")
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except RecursionError:
                raise AnswerError(f"{label}: the device's answer is nested too deeply to be "
                                  f"{script}'s result") from None
            except ValueError:
                break
            if isinstance(doc, dict) and doc.get("kind") == kind:
                return doc
            break
    raise AnswerError(f"{label}: the remote run printed no result (is the {script} from "
                      "this gtn_deploy version?)")


def _bad(label: str, field: str, problem: str) -> AnswerError:
    return AnswerError(f"{label}: the device's answer is invalid: {field} {problem}")


def field(label: str, doc: dict, key: str, kind: type | tuple, where: str = "") -> Any:
    """``doc[key]`` if present and of ``kind`` (bool is never a number)."""
    name = f"{where}{key}"
    if key not in doc:
        raise _bad(label, name, "is missing")
    value = doc[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _bad(label, name, f"is {value!r}, not a {_names(kind)}")
    if not isinstance(value, kind):
        raise _bad(label, name, f"is {type(value).__name__}, not a {_names(kind)}")
    return value


def _names(kind: type | tuple) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def positive(label: str, value: Any, name: str, zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(label, name, f"is {type(value).__name__}, not a number")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise _bad(label, name, f"is {value!r}; expected a finite number "
                                f"{'>= 0' if zero else '> 0'}")
    return float(value)


def _count(label: str, doc: dict, key: str, where: str, least: int) -> int:
    value = field(label, doc, key, int, where)
    if value < least:
        raise _bad(label, f"{where}{key}", f"is {value}; expected >= {least}")
    return value


def _machine(label: str, doc: dict) -> None:
    machine = field(label, doc, "machine", dict)
    for key, value in machine.items():
        if not isinstance(value, (str, int, float, type(None))) or \
                (isinstance(value, str) and len(value) > 1000):
            raise _bad(label, f"machine.{key}", "is not a short plain value")


def check_bundle_timing(label: str, doc: dict[str, Any], runs: int | None) -> dict[str, Any]:
    """A ``gtn_deploy.bundle_timing`` answer (run_onnx.py --json): every latency finite and
    positive, the quantiles in order, the counts those asked for."""
    for key in ("model", "runtime", "runtime_version"):
        field(label, doc, key, str)
    if not isinstance(doc.get("detail", {}), dict):
        raise _bad(label, "detail", "is not an object")
    _machine(label, doc)
    timing = field(label, doc, "timing", dict)
    values = [positive(label, field(label, timing, k, (int, float), "timing."), f"timing.{k}")
              for k in _QUANTILES]
    if values != sorted(values):
        raise _bad(label, "timing", "quantiles are out of order (min <= p50 <= ... <= max)")
    positive(label, field(label, timing, "mean_ms", (int, float), "timing."), "timing.mean_ms")
    positive(label, field(label, timing, "throughput_ips", (int, float), "timing."),
             "timing.throughput_ips")
    got = _count(label, timing, "runs", "timing.", 1)
    if runs is not None and got != runs:
        raise _bad(label, "timing.runs", f"is {got}; {runs} were asked for")
    _count(label, timing, "warmup", "timing.", 0)
    _count(label, timing, "batch_size", "timing.", 1)
    return doc


def check_subnet_timing(label: str, doc: dict[str, Any], n_models: int,
                        profiled: int) -> dict[str, Any]:
    """A ``gtn_deploy.subnet_timing`` answer (time_subnets.py): rounds of per-call ms for
    each model sent, every call finite and positive, node times for those profiled."""
    field(label, doc, "runtime_version", str)
    field(label, doc, "stop", str)
    _machine(label, doc)
    positive(label, field(label, doc, "timing_s", (int, float)), "timing_s", zero=True)
    rounds = field(label, doc, "rounds", list)
    if len(rounds) != n_models:
        raise _bad(label, "rounds", f"covers {len(rounds)} subnets; {n_models} were sent")
    for i, per_model in enumerate(rounds):
        if not isinstance(per_model, list) or not per_model:
            raise _bad(label, f"rounds[{i}]", "holds no rounds")
        for j, calls in enumerate(per_model):
            if not isinstance(calls, list) or not calls:
                raise _bad(label, f"rounds[{i}][{j}]", "holds no timed calls")
            for ms in calls:
                positive(label, ms, f"rounds[{i}][{j}] call")
    order = field(label, doc, "order", list)
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_models
               for i in order):
        raise _bad(label, "order", f"names a subnet outside 0..{n_models - 1}")
    _nodes(label, field(label, doc, "nodes", list), profiled)
    _optional(label, doc, {"cpuinfo": dict, "processor": str, "provider": str,
                           "load_avg_1m": (int, float)})
    if not all(isinstance(v, str) for v in doc.get("cpuinfo", {}).values()):
        raise _bad(label, "cpuinfo", "holds a value that is not text")
    return doc


def _optional(label: str, doc: dict, kinds: dict[str, type | tuple]) -> None:
    """Keys that may be absent or null, else of their kind."""
    for key, kind in kinds.items():
        if doc.get(key) is not None:
            field(label, doc, key, kind)


def _nodes(label: str, nodes: list, profiled: int) -> None:
    if len(nodes) != profiled:
        raise _bad(label, "nodes", f"covers {len(nodes)} subnets; {profiled} were profiled")
    for i, per_node in enumerate(nodes):
        if not isinstance(per_node, list):
            raise _bad(label, f"nodes[{i}]", "is not a list")
        for entry in per_node:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and isinstance(entry[1], list)):
                raise _bad(label, f"nodes[{i}]", "holds an entry that is not [name, [us, ...]]")
            for us in entry[1]:
                positive(label, us, f"nodes[{i}] {entry[0][:60]}", zero=True)


def check_device(label: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A ``gtn_deploy.device_check`` answer: the versions there."""
    for key in ("python", "numpy", "onnxruntime"):
        field(label, doc, key, str)
    return doc
