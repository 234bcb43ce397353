#!/usr/bin/env python3
"""Time calibration subnets with onnxruntime and numpy only; print one JSON line.

    python3 time_subnets.py spec.json

``gtnd calibrate --host`` sends this script into a temporary folder on the device, beside
the subnets (ONNX files), spec.json (what to time, and how) and bundle_io.py (the machine
fingerprint that ``gtnd bench --host`` records too). Latency follows the protocol of
gtn_deploy/rounds.py: interleaved rounds in a shuffled order, more rounds until each
subnet's figure reproduces. With ``profile.runs`` the first ``profile.models`` subnets then
run under onnxruntime's node profiler, interleaved too (tier 2 of the latency model).

The answer carries every timed call and every profiled node time: gtn_deploy computes the
statistics with its own code, and the copy of the statistic here only decides when to stop.
It must not import gtn_deploy or torch, and it runs on Python 3.8 with numpy and onnxruntime.
"""

import json
import math
import os
import platform
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KIND = "gtn_deploy.subnet_timing"
LOW_QUANTILE = 10.0  # percent, as gtn_deploy/rounds.py


# -- the statistic of gtn_deploy/rounds.py, in Python 3.8 (stopping only) --------------------------

def percentile(sorted_values, q):
    """Linear-interpolated percentile of a sorted list (gtn_deploy.stats.percentile)."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def robust_ms(rounds):
    """LOW_QUANTILE of all calls pooled over ``rounds`` (rounds.robust_ms)."""
    return percentile(sorted(t for r in rounds for t in r), LOW_QUANTILE)


def half_spread(rounds):
    """|statistic of the first half of the rounds / of the second half - 1|
    (rounds.half_spread; inf below two rounds)."""
    if len(rounds) < 2:
        return float("inf")
    half = len(rounds) // 2
    return abs(robust_ms(rounds[:half]) / robust_ms(rounds[half:]) - 1)


def run_rounds(time_round, n, plan, rng):
    """Interleaved adaptive rounds over ``n`` models, as rounds.run_rounds: at least
    ``min_rounds`` (and two), then the models whose figure does not yet reproduce within
    ``spread_bound``, until none is left, ``max_rounds`` or ``budget_s``."""
    rounds = [[] for _ in range(n)]
    active, order, start, stop = list(range(n)), [], time.perf_counter(), "max_rounds"
    for r in range(plan["max_rounds"]):
        rng.shuffle(active)
        for i in active:
            rounds[i].append(time_round(i))
            order.append(i)
        if r + 1 < max(plan["min_rounds"], 2):
            continue
        active = sorted(i for i in active if half_spread(rounds[i]) > plan["spread_bound"])
        if not active:
            stop = "converged"
            break
        if time.perf_counter() - start >= plan["budget_s"]:
            stop = "budget"
            break
    return rounds, order, stop, time.perf_counter() - start


# -- onnxruntime --------------------------------------------------------------------------------

def session(ort, bundle_io, path, threads, provider, profile_prefix=None):
    """A session set up as gtn_deploy's ort_runner sets one up (the fingerprint says so)."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(os.path.join(HERE, path), opts, providers=[provider])
    except Exception as exc:  # onnxruntime raises its own exception types
        bundle_io.fail("onnxruntime cannot load %s: %s" % (path, str(exc).splitlines()[0]))


def caller(sess, x):
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def round_timer(call, warmup, iters):
    """One round of one model: ``warmup`` untimed calls, then the ms of ``iters`` calls."""
    def time_round():
        for _ in range(warmup):
            call()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            call()
            times.append(round((time.perf_counter() - t0) * 1e3, 6))
        return times

    return time_round


def node_times(profile_file):
    """Each node's kernel times (us) in the order the nodes first ran."""
    with open(profile_file, encoding="utf-8") as fh:
        events = json.load(fh)
    per_node = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") == "Node" and name.endswith("_kernel_time"):
            per_node.setdefault(name[:-len("_kernel_time")], []).append(ev["dur"])
    return [[name, durs] for name, durs in per_node.items()]


def profile(ort, bundle_io, models, inputs, spec, rng):
    """Node times of the first ``profile.models`` models, run interleaved in a shuffled order
    as subnets.profile_interleaved runs them."""
    prof = spec["profile"]
    n = min(prof["models"], len(models))
    sessions = [session(ort, bundle_io, m["file"], spec["threads"], spec["provider"],
                        os.path.join(HERE, "profile%d" % i)) for i, m in enumerate(models[:n])]
    calls = [caller(s, x) for s, x in zip(sessions, inputs)]
    order = list(range(n))
    for _ in range(-(-prof["runs"] // prof["per_round"])):
        rng.shuffle(order)
        for i in order:
            for _ in range(prof["warmup"] + prof["per_round"]):
                calls[i]()
    return [node_times(s.end_profiling()) for s in sessions]


# -- the machine --------------------------------------------------------------------------------

def cpuinfo():
    """The first processor's fields of /proc/cpuinfo, keys lower-cased, as
    gtn_deploy.machine.cpuinfo reads them (the calibration fingerprint's CPU comes from it)."""
    info = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return info
    for line in lines:
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip().lower(), value.strip())
    return info


def main(argv=None):
    sys.path.insert(0, HERE)  # bundle_io.py sits beside this script
    sys.dont_write_bytecode = True
    try:
        import bundle_io
        import numpy as np
    except ImportError as exc:  # numpy missing: one line
        raise SystemExit("error: %s; pip install numpy" % str(exc).splitlines()[0])
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        bundle_io.fail("usage: time_subnets.py spec.json")
    try:
        with open(os.path.join(HERE, argv[0]), encoding="utf-8") as fh:
            spec = json.load(fh)
    except (OSError, ValueError) as exc:
        bundle_io.fail("cannot read %s: %s" % (argv[0], exc))
    ort = bundle_io.require("onnxruntime", "pip install onnxruntime")
    provider, have = spec["provider"], ort.get_available_providers()
    if provider not in have:
        bundle_io.fail("onnxruntime %s has no %s (it has %s); install a build with it, or "
                       "measure with the CPU provider (gtnd calibrate --runtime "
                       "onnxruntime-cpu)" % (ort.__version__, provider, ", ".join(have)))
    models, plan = spec["models"], spec["plan"]
    # the input subnets.py times with: one fixed draw, float32
    inputs = [np.random.default_rng(0).standard_normal(m["input_shape"]).astype(np.float32)
              for m in models]
    t0 = time.perf_counter()
    sessions = [session(ort, bundle_io, m["file"], spec["threads"], provider) for m in models]
    build_s = time.perf_counter() - t0
    timers = [round_timer(caller(s, x), plan["warmup"], plan["iters"])
              for s, x in zip(sessions, inputs)]
    rng = random.Random(spec["seed"])  # one generator for both phases, as subnets.py
    rounds, order, stop, timing_s = run_rounds(lambda i: timers[i](), len(models), plan, rng)
    t0 = time.perf_counter()
    nodes = profile(ort, bundle_io, models, inputs, spec, rng) if spec["profile"]["runs"] else []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({
        "kind": KIND, "runtime": "onnxruntime", "runtime_version": ort.__version__,
        "provider": provider, "threads": spec["threads"], "rounds": rounds, "order": order,
        "stop": stop, "timing_s": timing_s, "build_s": build_s,
        "profile_s": time.perf_counter() - t0, "nodes": nodes, "cpuinfo": cpuinfo(),
        "processor": platform.processor(), "load_avg_1m": load,
        "machine": bundle_io.fingerprint("onnxruntime", ort.__version__)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
