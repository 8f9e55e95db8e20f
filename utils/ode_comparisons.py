"""Notebook 05's comparisons: is one variant better than another, paired over training seeds?

Every seed gives each variant the same data split, initialisation seed and batch order, so two
variants are compared seed by seed (``utils.stats``):

* ``paired_comparison``: the mean per-seed gain of ``b`` over ``a`` (signed so that positive favours
  ``b``), its bootstrap 95% interval, the spread of the gains and the paired t-test's p-value.
* ``compare_family``: several variants against one baseline (one claim), Holm-adjusted.
* ``verdict`` / ``family_verdict``: the rule of every row of the notebook's closing table.
* ``seeds_needed``: the seed count a paired t-test needs for a target gain, from the spread of the
  gains in a pilot run (``PILOT_GAIN_SD``).

Runs are the rows ``utils.ode_experiments.Runner`` returns (columns ``kind``, ``share``, ``seed``
and the measured ones).

Public names: ``paired_values``, ``paired_comparison``, ``compare_family``, ``verdict``,
``family_verdict``, ``seeds_needed``, ``MIN_SEEDS``, ``POWER``, ``PILOT_GAIN_SD``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from utils import stats
from utils.ode_models import Variant

__all__ = [
    "MIN_SEEDS",
    "PILOT_GAIN_SD",
    "POWER",
    "compare_family",
    "family_verdict",
    "paired_comparison",
    "paired_values",
    "seeds_needed",
    "verdict",
]

MIN_SEEDS = 4  # a paired test over fewer seeds is refused ("too few")
POWER = 0.8  # the power the seed count is chosen for
# Spread (standard deviation over seeds) of the per-seed gain between two variants, from a pilot:
# the previous reference run (3 seeds: image accuracy 0.002-0.012, rounded up; LM 0.004 bits/char).
PILOT_GAIN_SD = {"image": 0.01, "lm": 0.005}


def paired_values(runs: pd.DataFrame, variant: Variant, column: str) -> pd.Series:
    """``column`` of one variant's runs, indexed by seed."""
    mine = runs[(runs.kind == variant.kind) & (runs.share == variant.share)]
    if mine.empty:
        raise ValueError(f"no runs of {variant.label!r} among these runs")
    return mine.set_index("seed")[column]


def paired_comparison(
    runs: pd.DataFrame, a: Variant, b: Variant, column: str, higher_is_better: bool
) -> dict:
    """Is ``b`` better than ``a``? Paired over seeds (each seed gave both the same data and batch
    order): the mean gain (signed so that positive favours ``b``), its bootstrap 95% interval,
    the spread of the per-seed gains and the paired t-test's p-value."""
    x, y = paired_values(runs, a, column), paired_values(runs, b, column)
    seeds = x.index.intersection(y.index)
    if len(seeds) < 2:
        raise ValueError(
            f"need at least 2 seeds run with both {a.label!r} and {b.label!r}, got {len(seeds)}"
        )
    x, y = x[seeds].to_numpy(), y[seeds].to_numpy()
    gains = (y - x) * (1 if higher_is_better else -1)
    interval = stats.bootstrap_interval(gains)
    return {
        "a": a.label,
        "b": b.label,
        "column": column,
        "n": len(seeds),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "gain": float(gains.mean()),
        "low": interval.low,
        "high": interval.high,
        "sd_gain": float(gains.std(ddof=1)),
        "p_value": stats.paired_p_value(x, y),
    }


def compare_family(
    runs: pd.DataFrame,
    baseline: Variant,
    others: Sequence[Variant],
    column: str,
    higher_is_better: bool,
) -> dict[str, dict]:
    """Paired comparisons of each of ``others`` with ``baseline`` (one claim), with Holm-adjusted
    p-values (``p_holm``) across them; a family of one keeps its p-value."""
    family = {
        v.label: paired_comparison(runs, baseline, v, column, higher_is_better) for v in others
    }
    adjusted = stats.holm({k: c["p_value"] for k, c in family.items()})
    return {k: {**c, "p_holm": adjusted[k]} for k, c in family.items()}


def verdict(comparison: dict, min_n: int = MIN_SEEDS) -> str:
    """The rule of every row of the closing table: 'holds' if the gain is positive with Holm-adjusted
    p < 0.05 (paired t-test over seeds), 'fails' if negative with p < 0.05, else 'within noise';
    below ``min_n`` seeds 'too few'."""
    return stats.test_verdict(comparison["gain"], comparison["p_holm"], comparison["n"], min_n)


def family_verdict(family: Mapping[str, dict], min_n: int = MIN_SEEDS) -> tuple[str, str]:
    """(variant, verdict) of a claim tested by several variants: the variant with the smallest
    Holm-adjusted p-value (ties: the larger gain) carries the claim's verdict."""
    name = min(family, key=lambda k: (family[k]["p_holm"], -family[k]["gain"]))
    return name, verdict(family[name], min_n)


def seeds_needed(effect: float, sd: float) -> int:
    """Seeds a paired t-test needs to detect ``effect`` with ``POWER`` when the per-seed gains
    spread by ``sd`` (at least ``MIN_SEEDS``)."""
    return max(MIN_SEEDS, stats.seeds_for_power(effect, sd, POWER))
