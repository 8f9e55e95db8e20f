"""Notebook 05's comparisons: is one variant better than another, paired over training seeds?

Every seed gives each variant the same data split, initialisation seed and batch order, so two
variants are compared seed by seed (``utils.stats``):

* ``paired_comparison``: the mean per-seed gain of ``b`` over ``a`` (signed so that positive favours
  ``b``), its bootstrap 95% interval, the spread of the gains and the paired t-test's p-value.
* ``compare_family``: several variants against one baseline (one claim), Holm-adjusted.
* ``verdict`` / ``family_verdict``: the rule of every row of the notebook's closing table
  (``utils.verdicts.from_test`` on the Holm-adjusted p), and ``RULE``, that rule in words.
* ``gain_text`` / ``comparison_row`` / ``family_row``: a comparison as text and as a
  ``utils.verdicts.claim_row`` of the closing table.
* ``seeds_needed``: the seed count a paired t-test needs for a target gain, from the spread of the
  gains in a pilot run (``PILOT_GAIN_SD``).

Runs are the rows ``utils.ode_experiments.Runner`` returns (columns ``kind``, ``share``, ``seed``
and the measured ones).

Public names: ``paired_values``, ``paired_comparison``, ``compare_family``, ``verdict``,
``family_verdict``, ``gain_text``, ``comparison_row``, ``family_row``, ``seeds_needed``,
``MIN_SEEDS``, ``POWER``, ``PILOT_GAIN_SD``, ``RULE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from utils import stats, verdicts
from utils.ode_models import Variant
from utils.verdicts import Verdict

__all__ = [
    "MIN_SEEDS",
    "PILOT_GAIN_SD",
    "POWER",
    "RULE",
    "compare_family",
    "comparison_row",
    "family_row",
    "family_verdict",
    "gain_text",
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
RULE = (
    f"paired t-test over seeds, p Holm-adjusted across one claim's variants, p < 0.05; "
    f"n ≥ {MIN_SEEDS} seeds"
)


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


def verdict(comparison: dict, min_n: int = MIN_SEEDS) -> Verdict:
    """The rule of every row of the closing table (``utils.verdicts.from_test``): 'holds' if the
    gain (positive agrees with the paper) is positive with Holm-adjusted p < 0.05 (paired t-test over
    seeds), 'opposite' if negative with p < 0.05, else 'within noise'; below ``min_n`` seeds
    'too few'."""
    return verdicts.from_test(
        comparison["gain"], comparison["p_holm"], comparison["n"], "rise", min_n
    )


def family_verdict(family: Mapping[str, dict], min_n: int = MIN_SEEDS) -> tuple[str, Verdict]:
    """(variant, verdict) of a claim tested by several variants: the variant with the smallest
    Holm-adjusted p-value (ties: the larger gain) carries the claim's verdict."""
    name = min(family, key=lambda k: (family[k]["p_holm"], -family[k]["gain"]))
    return name, verdict(family[name], min_n)


def seeds_needed(effect: float, sd: float) -> int:
    """Seeds a paired t-test needs to detect ``effect`` with ``POWER`` when the per-seed gains
    spread by ``sd`` (at least ``MIN_SEEDS``)."""
    return max(MIN_SEEDS, stats.seeds_for_power(effect, sd, POWER))


def gain_text(comparison: Mapping, scale: float = 1.0, unit: str = "") -> str:
    """'+0.42 pts [-0.10, +0.90]': the mean gain and its bootstrap 95% interval, times ``scale``."""
    c, u = comparison, f" {unit}" if unit else ""
    return f"{c['gain'] * scale:+.2f}{u} [{c['low'] * scale:+.2f}, {c['high'] * scale:+.2f}]"


def comparison_row(
    claim: str, paper: str, here: str, comparison: Mapping, scale: float = 1.0, unit: str = ""
) -> dict:
    """The closing table's row (``utils.verdicts.claim_row``) of one comparison: its verdict by
    ``RULE``, the gain's interval and the Holm-adjusted p in the interval column."""
    interval = f"{gain_text(comparison, scale, unit)}, Holm p={comparison['p_holm']:.3g}"
    return verdicts.claim_row(claim, paper, here, verdict(comparison), RULE, interval)


def family_row(
    claim: str, paper: str, family: Mapping[str, dict], scale: float = 1.0, unit: str = ""
) -> dict:
    """The row of a claim tested by several variants: every variant's gain in ``here``; the
    verdict and interval of the variant with the smallest Holm-adjusted p (``family_verdict``)."""
    name, _ = family_verdict(family)
    here = "; ".join(
        f"{k.split(',')[0]} {gain_text(c, scale, unit)} (Holm p={c['p_holm']:.2g})"
        for k, c in family.items()
    )
    row = comparison_row(claim, paper, here, family[name], scale, unit)
    return {**row, "interval": f"{name.split(',')[0]}: {row['interval']}"}
