"""Notebook 02's figures: the sparsity–faithfulness curves (the paper's Pareto figure) and the
feature-density histogram of a transcoder beside an SAE of similar L0.

Public names: ``plot_pareto``, ``closest_l0_pair``, ``feature_density``, ``plot_density``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from utils.plotting import label, new_figure

__all__ = ["closest_l0_pair", "feature_density", "plot_density", "plot_pareto"]

MARKERS = {"transcoder": "o", "sae": "s"}


def plot_pareto(sweep: pd.DataFrame, clean_ce: float, zero_ce: float, layer: int, title: str) -> Figure:
    """CE loss against L0 (log scale) for each kind of dictionary, with the clean and zero-ablated floors."""
    fig, ax = new_figure()
    for kind, marker in MARKERS.items():
        part = sweep[sweep.kind == kind].sort_values("l0")
        ax.plot(part.l0, part.ce_loss, marker=marker, label=f"{kind}s")
    ax.axhline(clean_ce, color="k", linestyle="--", label="clean model")
    ax.axhline(zero_ce, color="tab:red", linestyle=":", label=f"MLP {layer} zero-ablated")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # major ticks only: minor labels overlap
    label(ax, title, "L0 (active features per token, log scale)", "CE loss with the MLP replaced (nats/token)")
    return fig


def closest_l0_pair(sweep: pd.DataFrame) -> tuple[tuple, tuple]:
    """The (transcoder row, SAE row) of a sweep whose L0s are closest by ratio."""
    pairs = [(t, s) for t in sweep[sweep.kind == "transcoder"].itertuples()
             for s in sweep[sweep.kind == "sae"].itertuples()]
    if not pairs:
        raise ValueError("the sweep needs at least one transcoder and one SAE to pair them")
    return min(pairs, key=lambda p: abs(np.log((p[0].l0 + 1) / (p[1].l0 + 1))))


def feature_density(acts: torch.Tensor, keep: torch.Tensor) -> np.ndarray:
    """The fraction of kept tokens on which each feature fires (acts: [tokens, features])."""
    return (acts[keep] > 0).float().mean(0).numpy()


def plot_density(density: Mapping[str, np.ndarray], l1_of: Mapping[str, float], n_tokens: int) -> Figure:
    """Histogram of log10 feature density per kind of dictionary; the title gives the live medians."""
    fig, ax = new_figure()
    medians = {kind: float(np.median(freq[freq > 0])) if (freq > 0).any() else float("nan")
               for kind, freq in density.items()}
    for kind, freq in density.items():
        ax.hist(np.log10(freq[freq > 0]), bins=40, alpha=0.6,
                label=f"{kind}, L1 {l1_of[kind]:g} ({(freq == 0).mean():.0%} never fire)")
    found = " vs ".join(f"{medians[k]:.2%} ({k})" for k in density)
    label(ax, f"Feature density on {n_tokens:,} held-out tokens:\nthe median live feature fires on {found}",
          "log10 fraction of tokens a feature fires on", "features")
    return fig
