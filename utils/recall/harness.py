"""Notebook 01's harness: its scale presets and the statistics behind its paper-vs-here verdicts.

Nothing here is the paper's method (that is ``utils.recall.knockout``, ``enrichment``,
``extraction`` and ``heads``); these are the notebook's sizes per scale and the bootstrap intervals
over facts that turn the method's per-fact numbers into verdicts and printed summaries.

* ``PRESETS``: the sizes each ``scale`` fills in (``apply_scale(globals(), recall.PRESETS)``).
* ``fact_interval`` / ``NO_FACTS``: the mean of per-fact values with its bootstrap interval.
* Knockout curves: ``knockout_minima``, ``minimum_layer``, ``minimum_layer_gap`` (optionally
  against a baseline curve such as the first-token sink), ``excess_minimum``,
  ``smallest_effect_margin``, ``curve_bands`` (bootstrap bands over facts), ``describe_minimum``.
* Attributes rate by position: ``position_peaks``, ``peak_advantage``, ``specific_summary``.

Public names: ``PRESETS``, ``NO_FACTS``, ``fact_interval``, ``knockout_minima``, ``minimum_layer``,
``minimum_layer_gap``, ``excess_minimum``, ``smallest_effect_margin``, ``curve_bands``,
``describe_minimum``, ``position_peaks``,
``peak_advantage``, ``specific_summary``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from utils.recall.enrichment import POSITIONS
from utils.recall.knockout import KNOCKOUT_LABELS, KnockoutResult
from utils.stats import CONFIDENCE, N_BOOTSTRAP, Interval, bootstrap_interval

__all__ = [
    "NO_FACTS",
    "PRESETS",
    "curve_bands",
    "describe_minimum",
    "excess_minimum",
    "fact_interval",
    "knockout_minima",
    "minimum_layer",
    "minimum_layer_gap",
    "peak_advantage",
    "position_peaks",
    "smallest_effect_margin",
    "specific_summary",
]

PRESETS = {
    "smoke": {
        "max_candidates": 48,
        "n_facts": 12,
        "window": 5,
        "knockout_stride": 7,
        "enrich_window": 5,
        "enrich_stride": 6,
        "lens_tokens": 1024,
        "n_top_heads": 2,
        "n_examples": 2,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "max_candidates": 24,
        "n_facts": 6,
        "knockout_stride": 15,
        "enrich_stride": 10,
        "fact_batch": 8,
        "top_tokens": 100,
        "kept_tokens": 20,
        "lens_tokens": 256,
        "n_top_heads": 1,
        "n_examples": 1,
    },
    "default": {
        "model_name": "smollm2-135m",
        "facts_source": "shipped",
        "attribute_source": "facts",
        "comparison_attribute_source": "shipped",
        "max_candidates": 0,
        "n_facts": 0,
        "min_facts": 30,
        "window": 5,
        "knockout_stride": 2,
        "fact_batch": 32,
        "top_tokens": 500,
        "kept_tokens": 50,
        "lens_tokens": 4096,
        "lens_source": "prose",
        "enrich_at": 0.83,
        "enrich_window": 5,
        "enrich_stride": 3,
        "extraction_block_from": 0.5,
        "n_top_heads": 5,
        "ov_top_k": 10,
        "n_examples": 3,
    },
    "paper": {
        "model_name": "gpt2-xl",
        "facts_source": "known_1000",
        "attribute_source": "wikipedia",
        "comparison_attribute_source": "facts",
        "window": 9,
        "knockout_stride": 1,
        "enrich_window": 10,
        "enrich_stride": 1,
        "fact_batch": 16,
    },
}


NO_FACTS = Interval(
    float("nan"), float("nan"), float("nan"), 0
)  # verdicts on it say "too few: n=0"


def fact_interval(values: torch.Tensor, seed: int = 0) -> Interval:
    """Mean of per-fact ``values`` [F] with its bootstrap interval over facts (``NO_FACTS`` if F = 0)."""
    if values.numel() == 0:
        return NO_FACTS
    return bootstrap_interval(values.double().numpy(), seed=seed)


def _over_facts(n: int, statistic: Callable[[np.ndarray], float], seed: int = 0) -> Interval:
    """Bootstrap interval of ``statistic(fact indices)`` over resampled facts (``NO_FACTS`` if n = 0)."""
    if n == 0:
        return NO_FACTS
    return bootstrap_interval(
        np.arange(n), statistic=lambda idx: statistic(idx.astype(int)), seed=seed
    )


def knockout_minima(result: KnockoutResult, rows: Sequence[bool] | None = None) -> dict[str, dict]:
    """Each curve's minimum (mean over the facts in ``rows``), its layer, and the interval of the
    mean change at that layer over those facts."""
    change = result.change(rows)
    out = {}
    for i, source in enumerate(result.sources):
        j = int(change[i].mean(-1).nan_to_num(0.0).argmin())
        interval = fact_interval(change[i, j])
        out[KNOCKOUT_LABELS[source]] = {
            "min_change_pct": interval.estimate,
            "layer": result.centers[j],
            "interval": interval.as_dict(),
            "n": interval.n,
        }
    return out


def minimum_layer(
    result: KnockoutResult, source: str, rows: Sequence[bool] | None = None
) -> Interval:
    """Bootstrap interval (over facts) of the layer where ``source``'s mean curve is lowest."""
    change = result.change(rows)
    curve, centers = change[result.sources.index(source)].numpy(), np.array(result.centers)
    return _over_facts(curve.shape[-1], lambda idx: float(centers[curve[:, idx].mean(-1).argmin()]))


def minimum_layer_gap(
    result: KnockoutResult,
    early: str,
    late: str,
    rows: Sequence[bool] | None = None,
    baseline: str | None = None,
) -> Interval:
    """Bootstrap interval of (layer of ``late``'s minimum) − (layer of ``early``'s minimum); with
    a ``baseline`` source, ``early``'s curve is taken minus the baseline's (e.g. the sink's)."""
    change = result.change(rows)
    a, b = (change[result.sources.index(s)].numpy() for s in (early, late))
    if baseline is not None:
        a = a - change[result.sources.index(baseline)].numpy()
    centers = np.array(result.centers)
    return _over_facts(
        a.shape[-1],
        lambda idx: float(
            centers[b[:, idx].mean(-1).argmin()] - centers[a[:, idx].mean(-1).argmin()]
        ),
    )


def smallest_effect_margin(
    result: KnockoutResult, source: str, others: Sequence[str], rows: Sequence[bool] | None = None
) -> Interval:
    """Bootstrap interval of ``source``'s curve minimum minus the highest of the ``others``' minima
    (positive: ``source`` hurts least)."""
    change = result.change(rows)
    curves = {s: change[result.sources.index(s)].numpy() for s in (source, *others)}
    return _over_facts(
        change.shape[-1],
        lambda idx: float(
            curves[source][:, idx].mean(-1).min()
            - max(curves[o][:, idx].mean(-1).min() for o in others)
        ),
    )


def excess_minimum(
    result: KnockoutResult, source: str, baseline: str, rows: Sequence[bool] | None = None
) -> tuple[int, Interval]:
    """The layer where the mean of ``source``'s change minus ``baseline``'s is lowest, and the
    interval over facts of that difference there (negative: ``source`` hurts beyond it)."""
    change = result.change(rows)
    excess = change[result.sources.index(source)] - change[result.sources.index(baseline)]
    j = int(excess.mean(-1).nan_to_num(0.0).argmin())
    return result.centers[j], fact_interval(excess[j])


def curve_bands(
    result: KnockoutResult, rows: Sequence[bool] | None = None, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Per curve label: the mean change (%) per centre layer with its 95% bootstrap band over the
    facts in ``rows`` (columns mean, low, high; index layer)."""
    change = result.change(rows).double().numpy()  # [source, center, F]
    n = change.shape[-1]
    if n == 0:  # no facts: empty bands
        mean = low = high = np.full(change.shape[:2], np.nan)
    else:
        draws = np.random.default_rng(seed).integers(0, n, size=(N_BOOTSTRAP, n))
        # one centre at a time keeps the [source, draw, fact] resample small
        boot = np.stack([change[:, c][:, draws].mean(-1) for c in range(change.shape[1])], 1)
        low, high = np.quantile(boot, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=-1)
        mean = change.mean(-1)
    return {
        KNOCKOUT_LABELS[s]: pd.DataFrame(
            {"mean": mean[i], "low": low[i], "high": high[i]},
            index=pd.Index(result.centers, name="layer"),
        )
        for i, s in enumerate(result.sources)
    }


def describe_minimum(minimum: Mapping) -> str:
    """``'-86% [-90, -82] at layer 22'`` from a ``knockout_minima`` entry."""
    low, high = minimum["interval"]["low"], minimum["interval"]["high"]
    return (
        f"{minimum['min_change_pct']:+.0f}% [{low:+.0f}, {high:+.0f}] at layer {minimum['layer']}"
    )


def specific_summary(variants: Mapping[tuple[str, str], torch.Tensor]) -> pd.DataFrame:
    """One row per (attribute source, readout) of subject-specific rates [F, L, position]: n, the
    position with the highest peak, and each position's peak in points with its 95% interval."""
    rows = []
    for (source, readout), values in variants.items():
        peaks = position_peaks(values)
        best = max(POSITIONS, key=lambda p: peaks[p]["estimate"]) if len(values) else "—"
        cells = {
            p: f"{100 * v['estimate']:.1f} [{100 * v['low']:.1f}, {100 * v['high']:.1f}] (L{v['layer']})"
            for p, v in peaks.items()
        }
        rows.append(
            {
                "attribute source": source,
                "readout": readout,
                "n facts": len(values),
                "highest peak": best,
                **cells,
            }
        )
    return pd.DataFrame(rows)


def position_peaks(values: torch.Tensor) -> dict[str, dict]:
    """Per position: the layer where the mean of ``values`` [F, L, position] peaks, and the
    interval of the mean there over facts."""
    means = values.mean(0).nan_to_num(0.0)
    out = {}
    for p, position in enumerate(POSITIONS):
        layer = int(means[:, p].argmax())
        out[position] = {"layer": layer, **fact_interval(values[:, layer, p]).as_dict()}
    return out


def peak_advantage(values: torch.Tensor, position: str, rivals: Sequence[str]) -> Interval:
    """Bootstrap interval of ``position``'s peak (over layers, of the mean of ``values`` [F, L,
    position]) minus the highest of the ``rivals``' peaks; layers are re-chosen in every resample."""
    array = values.numpy()
    cols = {p: POSITIONS.index(p) for p in (position, *rivals)}
    peak = lambda idx, p: float(array[idx][:, :, cols[p]].mean(0).max())  # noqa: E731
    return _over_facts(
        array.shape[0], lambda idx: peak(idx, position) - max(peak(idx, r) for r in rivals)
    )
