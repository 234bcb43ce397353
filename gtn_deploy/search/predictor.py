"""Accuracy predictor for ``gtnd plan --predictor`` (numpy only, no torch), for every family.

Encoding (Once-for-All's accuracy-predictor layout, from the space's named decisions):
for each decision of ``space.decision_choices()`` that has more than one choice, in that
order, a one-hot of the value ``arch.decisions()`` gives it, all zeros for a decision the
arch does not make (a block slot past its stage's depth); plus log10 MFLOPs and log10
params. For an MBConv space that is, as before families: per block slot (stage x max
depth) the kernel size and expand ratio, each stage's depth, the resolution when the space
has several; for a ResNet space each stage's depth and width multiplier and each block
slot's expand ratio. The model is ridge regression on the standardised features, its
strength picked by exact leave-one-out error on the training subnets. Saved as JSON (never
pickle) with the name of the space it belongs to.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gtn_deploy.cost.analytic import network_cost
from gtn_deploy.errors import CheckpointError, UsageError
from gtn_deploy.io_utils import atomic_write_json
from gtn_deploy.spaces import space_by_name
from gtn_deploy.spaces.base import Arch, Space
from gtn_deploy.stats import kendall_tau

PREDICTOR_KIND = "gtn_deploy.accuracy_predictor"
SCHEMA_VERSION = 1
RIDGE_ALPHAS = (1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@functools.lru_cache(maxsize=64)
def encoded_decisions(space: Space) -> tuple[tuple[str, tuple], ...]:
    """The decisions the encoding one-hots, in order: those of ``space.decision_choices()``
    with more than one choice (any family's space: the search calls this per subnet)."""
    return tuple((name, tuple(choices)) for name, choices in space.decision_choices()
                 if len(choices) > 1)


def encoding_size(space: Space) -> int:
    return sum(len(choices) for _, choices in encoded_decisions(space)) + 2


def encode(space: Space, arch: Arch, mflops: float | None = None,
           params: int | None = None) -> np.ndarray:
    """The feature vector of ``arch`` (cost computed when not given)."""
    if mflops is None or params is None:
        cost = network_cost(space, arch)
        mflops, params = cost.mflops, cost.params
    values = dict(arch.decisions())
    parts: list[float] = []
    for name, choices in encoded_decisions(space):
        value = values.get(name)  # None: a slot the arch does not have, all zeros
        parts += [float(value == c) for c in choices]
    parts += [math.log10(max(mflops, 1e-9)), math.log10(max(params, 1))]
    return np.asarray(parts, dtype=np.float64)


@dataclass
class AccuracyPredictor:
    """Predicted top-1 (%) of a subnet; the Objective protocol of ``search.planner``."""

    space: str
    task: str
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float
    report: dict = field(default_factory=dict)
    name: str = "accuracy-predictor"

    def __call__(self, arch: Arch, mflops: float, params: int) -> float:
        return float(self.predict_features(encode(space_by_name(self.space), arch, mflops,
                                                  params)[None])[0])

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, space: Space, archs: Sequence[Arch]) -> np.ndarray:
        return self.predict_features(np.stack([encode(space, a) for a in archs]))

    def to_json(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": PREDICTOR_KIND, "space": self.space,
                "task": self.task, "model": "ridge", "alpha": self.alpha,
                "features": len(self.weights), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "report": self.report}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float]:
    """Weights, bias and the exact leave-one-out MSE of ridge on standardised ``x``."""
    n = len(y)
    xc = np.hstack([x, np.ones((n, 1))])
    reg = alpha * np.eye(xc.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    inv = np.linalg.pinv(xc.T @ xc + reg)
    coef = inv @ xc.T @ y
    hat = np.einsum("ij,jk,ik->i", xc, inv, xc)
    resid = (y - xc @ coef) / np.clip(1.0 - hat, 1e-6, None)
    return coef[:-1], float(coef[-1]), float(np.mean(resid**2))


def fit_predictor(space: Space, archs: Sequence[Arch], accuracies: Sequence[float],
                  alphas: Sequence[float] = RIDGE_ALPHAS) -> AccuracyPredictor:
    """Ridge regression of top-1 on the encoding; alpha by leave-one-out error."""
    if len(archs) != len(accuracies) or len(archs) < 3:
        raise UsageError(f"need at least 3 (arch, accuracy) pairs to fit, got {len(archs)}")
    x = np.stack([encode(space, a) for a in archs])
    y = np.asarray(accuracies, dtype=np.float64)
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0  # constant features (a choice never drawn) stay at zero
    xs = (x - mean) / scale
    best = min((_ridge(xs, y, a) + (a,) for a in alphas), key=lambda r: r[2])
    weights, bias, loo, alpha = best
    return AccuracyPredictor(space.name, space.task.name, mean, scale, weights, bias, alpha,
                             {"train_n": len(y), "loo_rmse": round(math.sqrt(loo), 4)})


def rmse(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)))


def fit_with_holdout(space: Space, archs: Sequence[Arch],
                     accuracies: Sequence[float], holdout: int = 20, seed: int = 0
                     ) -> AccuracyPredictor:
    """Fit on all but a seeded ``holdout`` subnets, report Kendall tau / RMSE on those, then
    refit on everything (the report keeps the held-out numbers)."""
    n = len(archs)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_test = holdout
    if n_test < 0 or (n_test and n - n_test < 3):
        raise UsageError(f"--holdout {holdout} of {n} subnets leaves fewer than 3 to fit on")
    report = {"n": n, "holdout_n": n_test}
    if n_test:
        test, train = order[:n_test], order[n_test:]
        model = fit_predictor(space, [archs[i] for i in train], [accuracies[i] for i in train])
        pred = model.predict(space, [archs[i] for i in test])
        truth = [accuracies[i] for i in test]
        tau = kendall_tau(pred, truth)  # NaN when undefined (a holdout of one, all tied)
        # null, not NaN, in the report: it is printed and saved as strict JSON
        report.update(holdout_kendall_tau=None if math.isnan(tau) else round(tau, 4),
                      holdout_rmse=round(rmse(pred, truth), 4))
    final = fit_predictor(space, archs, accuracies)
    final.report = {**final.report, **report}
    return final


# a fitted predictor's numbers (one-hot features standardised, accuracies in points) are
# far inside this; past it, the objective would overflow to inf or NaN in the search
MAX_PREDICTOR_VALUE = 1e6


def _check_numbers(path: Path, arrays: dict[str, np.ndarray], bias: float) -> None:
    """Finite, bounded numbers and a positive scale, or one CheckpointError line: a NaN,
    zero-scale or 1e308 predictor would write NaN objectives into the plan."""
    for name, values in {**arrays, "bias": np.asarray([bias])}.items():
        if not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_PREDICTOR_VALUE):
            raise CheckpointError(f"{path}: {name} holds a value that is not finite or beyond "
                                  f"+-{MAX_PREDICTOR_VALUE:g}; refit the predictor")
    if np.any(arrays["scale"] <= 0):
        raise CheckpointError(f"{path}: scale holds a value <= 0; refit the predictor")


def load_predictor(path: str | Path, space: Space) -> AccuracyPredictor:
    """Read a predictor file; it must be for ``space`` (same name and encoding size)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"predictor file {path} does not exist (fit one with "
                         "'gtnd predictor fit')") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"predictor file {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") != PREDICTOR_KIND:
        raise CheckpointError(f"{path} is not an accuracy predictor (kind must be "
                              f"'{PREDICTOR_KIND}')")
    if doc.get("space") != space.name:
        raise UsageError(f"predictor {path} was fitted for space '{doc.get('space')}', "
                         f"this plan searches space '{space.name}'")
    size = encoding_size(space)
    try:
        arrays = [np.asarray(doc[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
        bias, alpha = float(doc["bias"]), float(doc["alpha"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed predictor ({exc})") from None
    if any(a.shape != (size,) for a in arrays):
        raise CheckpointError(f"{path}: {len(arrays[2])} features, space '{space.name}' "
                              f"encodes {size}")
    _check_numbers(path, dict(zip(("mean", "scale", "weights"), arrays)), bias)
    return AccuracyPredictor(space.name, str(doc.get("task")), *arrays, bias, alpha,
                             doc.get("report") or {})
