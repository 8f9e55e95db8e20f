"""Transcoders against SAEs (Dunefsky, Chlenski & Nanda 2024, the Pareto figure): the sweep table on
two texts and the verdicts notebook 02 reads from it.

* every dictionary of a sweep judged on the held-out text (human-written at default) and, beside
  it, on a second text (the model's own), with each dictionary's CE per evaluation sequence for
  the intervals -> ``sweep_metrics``;
* "on par at matched L0" as a non-inferiority test: the CE gap (transcoder - SAE, SAE curve
  interpolated in log L0 at the transcoders' L0s) against a margin of a share of the
  zero-ablation gap, with a bootstrap interval over evaluation sequences -> ``on_par_verdict``;
* the fraction of CE recovered with its bootstrap interval over sequences -> ``recovered_interval``.

Public names: ``COMPARED``, ``sweep_metrics``, ``on_par_verdict``, ``recovered_interval``,
``OnPar``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils import verdicts
from utils.stats import CONFIDENCE, N_BOOTSTRAP, Interval
from utils.transcoders.metrics import (
    EvalSet,
    ce_baselines,
    dictionary_metrics,
    matched_l0_interval,
    overlap_counts,
)

__all__ = ["COMPARED", "OnPar", "on_par_verdict", "recovered_interval", "sweep_metrics"]

COMPARED = ("l0", "fvu", "delta_ce", "kl", "frac_recovered")  # the metrics given on both texts


def sweep_metrics(
    model: HookedTransformer,
    layer: int,
    dictionaries: Mapping[str, Mapping[float, Any]],
    ev: EvalSet,
    compare: EvalSet | None = None,
    prefix: str = "own_",
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """One row per dictionary ({kind: {l1: dictionary}}): ``dictionary_metrics`` on ``ev`` and,
    with ``compare``, the ``COMPARED`` metrics on it as ``prefix``-named columns; plus each row's
    spliced CE per sequence of ``ev`` (for ``on_par_verdict`` and ``recovered_interval``)."""
    base = ce_baselines(model, ev, layer)
    other = ce_baselines(model, compare, layer) if compare is not None else None
    rows, sequences = [], []
    for kind, by_l1 in dictionaries.items():
        for l1, dictionary in by_l1.items():
            row = dictionary_metrics(model, ev, layer, dictionary, kind, base, per_sequence=True)
            sequences.append(row.pop("ce_per_sequence"))
            if compare is not None:
                there = dictionary_metrics(model, compare, layer, dictionary, kind, other)
                row |= {prefix + name: there[name] for name in COMPARED}
            rows.append({"kind": kind, "l1": l1, **row})
    return pd.DataFrame(rows), sequences


@dataclass(frozen=True)
class OnPar:
    """The "on par at matched L0" verdict, the interval of the gap it read, its margin and counts."""

    verdict: verdicts.Verdict
    interval: Interval | None
    margin: float
    counts: dict[str, int]
    rule: str


def on_par_verdict(
    table: pd.DataFrame,
    ce_per_sequence: list[np.ndarray],
    clean_ce: float,
    zero_ce: float,
    min_points: int = 3,
    min_sequences: int = 8,
    margin_share: float = 0.1,
    seed: int = 0,
) -> OnPar:
    """Transcoders on par with SAEs at matched L0, as non-inferiority: *holds* when the interval of
    the CE gap (TC - SAE) lies below ``margin_share`` x the zero-ablation gap, *opposite* when it
    lies above it, else *within noise*; *too few* with fewer than ``min_points`` dictionaries of a
    kind or transcoders inside the SAEs' L0 range."""
    counts = overlap_counts(table)
    margin = margin_share * (zero_ce - clean_ce)
    rule = (
        f"≥ {min_points} TCs and SAEs, ≥ {min_points} TCs inside the SAE L0 range; holds if the 95% "
        f"bootstrap interval (over sequences) of the matched-L0 CE gap TC − SAE lies below "
        f"+{margin_share:.0%} of the zero-ablation gap ({margin:+.3f} nats)"
    )
    fewest = min(counts["transcoders"], counts["saes"], counts["transcoders_inside"])
    refused = verdicts.too_few(fewest, min_points)
    interval = matched_l0_interval(table, ce_per_sequence, seed=seed) if not refused else None
    if refused or interval is None:
        refused = refused or verdicts.too_few(0, min_points)
        return OnPar(refused, None, margin, counts, rule)
    verdict = verdicts.from_interval(interval, "fall", min_sequences, null=margin)
    return OnPar(verdict, interval, margin, counts, rule)


def recovered_interval(
    ev: EvalSet,
    layer: int,
    ce_per_sequence: np.ndarray,
    level: float = CONFIDENCE,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval over sequences of the fraction of CE recovered (ratio of means) by a
    dictionary whose spliced CE per sequence is ``ce_per_sequence``; needs ``ce_baselines`` run on
    ``ev`` for ``layer`` first (it keeps the zero-ablated CE per sequence)."""
    targets = ev.tokens[:, 1:, None].to(ev.clean_probs.device)
    clean = -torch.log(ev.clean_probs.gather(-1, targets)[..., 0]).double().mean(-1).cpu().numpy()
    zero = np.asarray(ev.zero_ablated[layer]["ce_per_sequence"])
    spliced = np.asarray(ce_per_sequence, dtype=float)
    ratio = lambda i: (zero[i].mean() - spliced[i].mean()) / (zero[i].mean() - clean[i].mean())  # noqa: E731
    draws = np.random.default_rng(seed).integers(0, len(zero), (n_boot, len(zero)))
    tail = (1 - level) / 2
    low, high = np.quantile([ratio(d) for d in draws], [tail, 1 - tail])
    return Interval(float(ratio(np.arange(len(zero)))), float(low), float(high), len(zero), level)
