import numpy as np
import pytest

from policies.common.statistics import mean_ci, paired_difference


def test_the_interval_covers_the_mean_and_is_reproducible():
    x = np.random.default_rng(0).exponential(30.0, 200)
    a, b = mean_ci(x), mean_ci(x)
    assert a == b  # fixed seed and resample count: regenerated tables are identical
    assert a.mean == pytest.approx(x.mean()) and a.low < a.mean < a.high
    # about the normal-theory half-width 1.96 s / sqrt(n)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert (a.high - a.low) / 2 == pytest.approx(half, rel=0.2)


def test_constant_data_gives_a_point_interval():
    ci = mean_ci([2.5, 2.5, 2.5])
    assert (ci.mean, ci.low, ci.high) == (2.5, 2.5, 2.5)
    same = paired_difference([1.0, 5.0, 9.0], [1.0, 5.0, 9.0])  # e.g. a policy that ties noop task for task
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and not same.resolved


def test_pairing_resolves_what_two_separate_intervals_cannot():
    rng = np.random.default_rng(1)
    task_difficulty = rng.exponential(40.0, 100)
    a = task_difficulty + rng.normal(0.0, 0.5, 100)
    b = task_difficulty + 1.0 + rng.normal(0.0, 0.5, 100)
    ia, ib = mean_ci(a), mean_ci(b)
    assert ia.high > ib.low  # the separate intervals overlap
    d = paired_difference(a, b)
    assert d.resolved and d.high < 0 and d.mean == pytest.approx(-1.0, abs=0.2)


def test_bad_samples_are_refused():
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])
    with pytest.raises(ValueError, match="NaN"):
        mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference([1.0, 2.0], [1.0])
