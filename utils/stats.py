"""Intervals, tests and power: the numbers every notebook's verdicts rest on.

The verdict words themselves are defined once, in ``utils.verdicts``, from these intervals and tests.

Public names: ``Interval``, ``bootstrap_interval``, ``paired_difference``, ``paired_p_value``,
``permutation_p_value``, ``holm``, ``paired_power``, ``seeds_for_power``, ``detectable_effect``, and
``CONFIDENCE``, ``N_BOOTSTRAP``, ``ALPHA``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, ttest_rel
from scipy.stats import t as student_t

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "N_BOOTSTRAP",
    "Interval",
    "bootstrap_interval",
    "detectable_effect",
    "holm",
    "paired_difference",
    "paired_p_value",
    "paired_power",
    "permutation_p_value",
    "seeds_for_power",
]

CONFIDENCE = 0.95
N_BOOTSTRAP = 2000
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval over ``n`` units."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = CONFIDENCE

    def format(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        """``'0.42 [0.35, 0.49]'`` (values times ``scale``, e.g. 100 for percent)."""
        f = lambda v: f"{v * scale:.{digits}f}{unit}"  # noqa: E731
        return f"{f(self.estimate)} [{f(self.low)}, {f(self.high)}]"

    def as_dict(self) -> dict:
        """Plain numbers, for metrics.json."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n, "level": self.level}


def _as_array(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: an interval needs at least one observation")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or inf values; drop or fix them before computing an interval")
    return array


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = CONFIDENCE,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over the units in ``values`` (facts, prompts, seeds)."""
    array = _as_array(values)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, array.size, size=(n_boot, array.size))
    boot = np.array([statistic(array[row]) for row in draws])
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return Interval(float(statistic(array)), float(low), float(high), int(array.size), level)


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = CONFIDENCE, seed: int = 0
) -> Interval:
    """Bootstrap interval of the mean of ``b - a`` over paired units (same seed, fact or prompt)."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired samples need equal lengths, got {x.size} and {y.size}")
    return bootstrap_interval(y - x, level=level, seed=seed)


def paired_p_value(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided paired t-test p-value of ``b - a`` (1.0 where the differences have no spread)."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired samples need equal lengths, got {x.size} and {y.size}")
    diff = y - x
    if x.size < 2 or np.allclose(diff, 0.0):
        return 1.0
    if np.allclose(diff, diff[0]):  # every pair moved by the same non-zero amount
        return 0.0
    return float(ttest_rel(y, x).pvalue)


def permutation_p_value(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """One-sided p-value of ``observed`` against null draws: (1 + #null ≥ observed) / (1 + n)."""
    draws = _as_array(null, "null")
    return float((1 + np.sum(draws >= observed)) / (1 + draws.size))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values for several variants tested against one claim."""
    names = sorted(p_values, key=p_values.get)
    m, running, adjusted = len(names), 0.0, {}
    for rank, name in enumerate(names):
        running = max(running, min(1.0, (m - rank) * p_values[name]))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}








def paired_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test to detect a mean difference ``effect`` over ``n`` pairs
    whose differences have standard deviation ``sd`` (noncentral t distribution)."""
    if n < 2:
        return 0.0
    if sd <= 0:
        raise ValueError(f"the standard deviation of the differences must be positive, got {sd}")
    df, shift = n - 1, abs(effect) / sd * np.sqrt(n)
    critical = student_t.ppf(1 - alpha / 2, df)
    power = float(nct.sf(critical, df, shift) + nct.cdf(-critical, df, shift))
    return power if np.isfinite(power) else 1.0  # scipy gives NaN far in the tail, where power is 1


def seeds_for_power(
    effect: float, sd: float, power: float = 0.8, alpha: float = ALPHA, max_n: int = 1000
) -> int:
    """The smallest number of pairs (seeds) at which the paired t-test reaches ``power`` for ``effect``."""
    for n in range(2, max_n + 1):
        if paired_power(effect, sd, n, alpha) >= power:
            return n
    raise ValueError(f"more than {max_n} pairs are needed for effect {effect} at sd {sd}")


def detectable_effect(sd: float, n: int, power: float = 0.8, alpha: float = ALPHA) -> float:
    """The smallest mean difference the paired t-test over ``n`` pairs detects with ``power``."""
    if n < 2:
        return float("inf")
    return float(brentq(lambda e: paired_power(e, sd, n, alpha) - power, 0.0, 100 * sd))
