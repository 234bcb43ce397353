"""Small statistics shared by timing loops, the latency calibration and the accuracy
predictor (stdlib only: no numpy, no torch, so every layer may import it).

One definition each, so that a p90 or a Kendall tau means the same number everywhere.
"""

from __future__ import annotations

import math
from typing import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of an already sorted list."""
    if not sorted_values:
        raise ValueError("no samples")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b of two paired sequences (O(n^2); n is a few hundred at most).

    Ties: a pair tied in ``a`` or in ``b`` counts as neither concordant nor discordant and
    leaves the denominator, as in tau-b (and ``scipy.stats.kendalltau``). A constant side
    (or fewer than two items) has no ranking at all, so tau is undefined: NaN, as scipy
    returns, not 0.0, which would read as "rankings unrelated" for a held-out set that
    could not tell.
    """
    if len(a) != len(b):
        raise ValueError(f"kendall_tau needs paired sequences, got {len(a)} and {len(b)}")
    concordant = discordant = only_a_tied = only_b_tied = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                only_a_tied += 1
            elif db == 0:
                only_b_tied += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    # (pairs untied in b) * (pairs untied in a)
    denom = math.sqrt((concordant + discordant + only_a_tied)
                      * (concordant + discordant + only_b_tied))
    return (concordant - discordant) / denom if denom else float("nan")
