"""Latency calibration: its document, the tier-1 fit and accuracy (no torch; the fingerprint
it records: ``gtn_deploy.fingerprint``).

A calibrated profile carries a ``calibration`` mapping written by ``gtnd calibrate``:

    schema_version: 1
    tier: 2                       # best tier fitted
    fingerprint: {runtime, runtime_version, provider, precision, threads, batch_size,
                  graph_optimization, cpu_model, machine}   # what the numbers are valid for
    fingerprint_id: 8 hex digits
    spaces: [fashion-mnist]       # the spaces the block table was measured on
    tier1: {seconds_per_gflop: {op class: s}, seconds_per_gbyte: s, kernel_overhead_us,
            invoke_overhead_us, bytes_per_elem, efficiency: {op class: eta vs the peak}}
    tier2: {lut_us: {block key: us}, fallback_ratio, min_coverage, residual: {features, coef}}
    expected_error: {"1": x, "2": y}   # 90th percentile |error| on held-out subnets
    validation: {...}, measurement: {...}

The tier-1 fit (``cost.tier1``'s formula) is non-negative least squares on relative error
(rows divided by the measured latency); tier 2's is ``cost.lut.fit_block_table``.
``cost.latency.latency_model`` reads the result back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.constants import OP_CLASSES
from gtn_deploy.cost.analytic import Layer, network_layers
from gtn_deploy.cost.roofline import roofline
from gtn_deploy.cost.tier1 import Tier1
from gtn_deploy.stats import kendall_tau

if TYPE_CHECKING:
    from gtn_deploy.profiles import DeviceProfile

CALIBRATION_SCHEMA_VERSION = 1
COMPUTE_CLASSES = tuple(c for c in OP_CLASSES if c not in ("pool", "elementwise"))
MIN_BAND = 0.05  # the narrowest error band a calibrated tier claims


# -- tier 1 ------------------------------------------------------------------------------------

def tier1_from_profile(profile: "DeviceProfile", precision: str) -> Tier1:
    """Tier 0's numbers in tier-1 form: the starting point of the fit."""
    r = roofline(profile, precision, 1)
    eta = dict(r.eta)
    return Tier1(tuple((c, 1.0 / (eta[c] * r.peak_flops)) for c in COMPUTE_CLASSES),
                 1.0 / (r.eta_memory * r.bandwidth), r.kernel_s, r.invoke_s, r.bytes_per_elem)


def _design_row(model: Tier1, layers: Sequence[Layer], batch: int) -> list[float]:
    """Features of one network with each layer's bound side chosen by ``model``."""
    flops = dict.fromkeys(COMPUTE_CLASSES, 0.0)
    traffic = kernels = 0.0
    for layer in layers:
        compute, memory = model.layer_terms(layer, batch)
        if layer.op_class in flops and compute >= memory and layer.flops:
            flops[layer.op_class] += layer.flops * batch
        else:
            traffic += (((layer.in_elems + layer.out_elems) * batch + layer.weight_elems)
                        * model.bytes_per_elem)
        kernels += layer.kernels
    return [*flops.values(), traffic, kernels, 1.0]


def fit_tier1(space: Space, archs: Sequence[Arch], measured_ms: Sequence[float],
              start: Tier1, batch: int = 1, rounds: int = 6) -> Tier1:
    """Non-negative least squares on relative error; re-decide each layer's roofline side
    with the new coefficients and refit, a few rounds."""
    import numpy as np
    from scipy.optimize import nnls

    y = np.asarray(measured_ms, dtype=float) * 1e-3
    layer_sets = [network_layers(space, a) for a in archs]
    model = start
    for _ in range(rounds):
        a = np.array([_design_row(model, ls, batch) for ls in layer_sets]) / y[:, None]
        scale = np.linalg.norm(a, axis=0)
        scale[scale == 0] = 1.0
        coef, _ = nnls(a / scale, np.ones(len(y)))
        coef = [float(c) for c in coef / scale]
        n = len(COMPUTE_CLASSES)
        fitted = Tier1(tuple(zip(COMPUTE_CLASSES, coef[:n])), coef[n], coef[n + 1],
                       coef[n + 2], start.bytes_per_elem)
        if fitted == model:
            break
        model = fitted
    return model


# -- accuracy ------------------------------------------------------------------------------------

def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within +-10%, MAPE, worst and p90 |error|, Kendall tau; error = pred/meas - 1."""
    errors = sorted(abs(p / m - 1) for p, m in zip(predicted, measured))
    n = len(errors)
    out = {"n": n, "within_10pct": sum(e <= 0.10 + 1e-9 for e in errors) / n,
           "mape": sum(errors) / n, "p90_abs_error": errors[min(n - 1, int(0.9 * n))],
           "max_abs_error": errors[-1], "kendall_tau": kendall_tau(predicted, measured)}
    return {k: (v if k == "n" else round(float(v), 4)) for k, v in out.items()}
