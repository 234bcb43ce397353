"""The shared statistics: one percentile method (numpy's linear) and one Kendall tau-b."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from gtn_deploy.stats import kendall_tau, percentile


def test_percentile_is_numpys_linear_method():
    rng = random.Random(0)
    for n in (1, 2, 7, 100):
        values = sorted(rng.random() for _ in range(n))
        for q in (0, 10, 50, 90, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    with pytest.raises(ValueError):
        percentile([], 50)


def test_kendall_tau_b_with_ties():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # 4 concordant pairs, one tied in a only, one tied in b only: 4 / sqrt(5 * 5) (scipy's)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)


def test_kendall_tau_undefined_is_nan():
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))  # a constant side has no order
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert math.isnan(kendall_tau([], []))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])
