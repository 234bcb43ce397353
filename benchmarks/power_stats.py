"""Paired comparisons of two training methods over students x seeds, with their uncertainty.

Every figure pairs runs that share a seed and a student (the same data order and the same
student initialisation), which removes most of the between-seed variance.
"""

from __future__ import annotations

import math
import random
import statistics


def t_quantile(df: int, q: float = 0.975) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


def paired_summary(a: dict[tuple[int, str], float], b: dict[tuple[int, str], float],
                   resamples: int = 10_000, seed: int = 0) -> dict | None:
    """``a`` minus ``b`` over the (seed, student) pairs both have.

    - ``mean``: the mean over seeds of the per-seed pool-average difference, over the seeds
      where both have every student that either has on that seed;
    - ``ci95``: a t-interval over those seeds (None with one seed);
    - ``ci95_bootstrap``: a percentile bootstrap over the student x seed pairs;
    - ``win_rate``: the share of pairs where ``a`` is higher (ties count half).
    """
    pairs = sorted(k for k in a if k in b)
    if not pairs:
        return None
    diffs = [a[k] - b[k] for k in pairs]
    seeds = sorted({k[0] for k in pairs})
    students = {s: {k[1] for k in a if k[0] == s} | {k[1] for k in b if k[0] == s}
                for s in seeds}
    per_seed = {s: statistics.mean(a[(s, st)] - b[(s, st)] for st in students[s])
                for s in seeds if all((s, st) in a and (s, st) in b for st in students[s])}
    values = list(per_seed.values())
    mean = statistics.mean(values) if values else statistics.mean(diffs)
    ci = None
    if len(values) > 1:
        half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        ci = [mean - half, mean + half]
    rng = random.Random(seed)
    boot = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(resamples))
    wins = sum(1.0 if d > 0 else 0.5 if d == 0 else 0.0 for d in diffs)
    return {"mean": mean, "ci95": ci, "half_width": None if ci is None else (ci[1] - ci[0]) / 2,
            "ci95_bootstrap": [boot[int(0.025 * resamples)], boot[int(0.975 * resamples) - 1]],
            "per_seed": {str(s): v for s, v in per_seed.items()},
            "win_rate": wins / len(diffs), "pairs": len(diffs), "seeds": len(values)}
