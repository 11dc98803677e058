"""Confidence intervals for per-task losses: what lets a table say which differences are resolved.

Every summary the zoo prints carries a 95 % percentile-bootstrap interval of
the mean loss, and comparisons carry *paired* intervals (the same tasks for
both policies, resampled together), which are far tighter than two
independent intervals because tasks differ much more than policies do.

The bootstrap is SciPy's (:func:`scipy.stats.bootstrap`, percentile method)
with a fixed seed and resample count, so a regenerated table is identical to
the shipped one. A difference is *resolved* when its interval excludes zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

__all__ = ["BOOTSTRAP_SEED", "BOOTSTRAP_RESAMPLES", "CONFIDENCE", "Interval", "mean_ci", "paired_difference"]

BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2_000
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    @property
    def resolved(self) -> bool:
        """True when the interval excludes zero (for a difference: the two sides are told apart)."""
        return self.low > 0.0 or self.high < 0.0

    def to_json(self) -> dict:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high}

    def __str__(self) -> str:
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}]"


def mean_ci(values, *, seed: int = BOOTSTRAP_SEED, resamples: int = BOOTSTRAP_RESAMPLES) -> Interval:
    """The mean of ``values`` with its 95 % percentile-bootstrap interval (a point interval for constant data)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no values to summarise")
    if not np.all(np.isfinite(x)):
        raise ValueError("values contain NaN or inf")
    mean = float(x.mean())
    if x.size == 1 or np.ptp(x) == 0.0:  # nothing to resample: the bootstrap distribution is a point
        return Interval(mean, mean, mean)
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=CONFIDENCE,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_difference(a, b, **kwargs) -> Interval:
    """Mean of ``a - b`` over the same tasks, with its 95 % interval (negative: ``a`` has the lower loss)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same tasks: shapes {a.shape} and {b.shape}")
    return mean_ci(a - b, **kwargs)
