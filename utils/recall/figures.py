"""Notebook 01's figures: each draws one experiment's numbers; the titles are passed in (built from
the numbers of the verdict rows, ``utils.recall.claims``) or computed from the plotted values.

* ``plot_knockout``: the knockout curves per prompt subset, on one shared y-range, with 95%
  bootstrap bands over facts and integer layer ticks.
* ``plot_rates``: the subject-specific rate (logit and tuned lens) beside the raw rate.
* ``plot_lens_kl``: each readout's KL to the final output per layer.
* ``plot_enrichment``: the attributes rate with early sublayers zeroed, against no knockout.
* ``plot_extraction``: extraction events per layer, with and without subject → last cut.
* ``plot_ov_hits``: per head, how often its OV circuit maps the subject to the prediction.

Public names: ``plot_knockout``, ``plot_rates``, ``plot_lens_kl``, ``plot_enrichment``,
``plot_extraction``, ``plot_ov_hits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.plotting import label, new_figure
from utils.recall.enrichment import POSITIONS, EnrichmentResult, mean_table
from utils.recall.harness import curve_bands
from utils.recall.knockout import KnockoutResult

__all__ = [
    "plot_enrichment",
    "plot_extraction",
    "plot_knockout",
    "plot_lens_kl",
    "plot_ov_hits",
    "plot_rates",
]

STYLES = ["o-", "s-", "^-", "x--"]


def plot_knockout(
    result: KnockoutResult,
    subsets: Mapping[str, Sequence[bool]],
    title: str,
    excess_in: Sequence[str] = (),
) -> Figure:
    """One panel per subset of facts: the mean relative change of p(prediction) per window centre
    and knockout source, with 95% bootstrap bands over facts; panels share the y-range. The panels
    named in ``excess_in`` also show the non-subject curve minus the first-token curve (dotted)."""
    fig, axes = new_figure(ncols=len(subsets), width=6.5 * len(subsets))
    axes = np.atleast_2d(axes)[0]
    for ax, (name, rows) in zip(axes, subsets.items(), strict=True):
        for (curve, band), style in zip(curve_bands(result, rows).items(), STYLES, strict=False):
            (line,) = ax.plot(band.index, band["mean"], style, markersize=4, label=curve)
            ax.fill_between(band.index, band.low, band.high, color=line.get_color(), alpha=0.15)
        if name in excess_in and np.sum(rows):
            change = result.change(rows).mean(-1)
            excess = (
                change[result.sources.index("non-subject")] - change[result.sources.index("first")]
            )
            ax.plot(
                result.centers, excess, ":", color="black", label="non-subject minus first token"
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        label(
            ax,
            f"{name} (n={int(np.sum(rows))})",
            f"centre layer ℓ of the {result.window}-layer window",
            "change in p(prediction) (%)",
        )
    limits = np.array([ax.get_ylim() for ax in axes])
    for ax in axes:  # one y-range for every panel
        ax.set_ylim(limits[:, 0].min(), limits[:, 1].max())
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rates(
    specific: Mapping[str, torch.Tensor],
    raw: torch.Tensor,
    embedding_rate: float,
    titles: tuple[str, str],
) -> Figure:
    """Left: the subject-specific rate (logit lens solid, tuned lens dotted); right: the raw rate
    with the subject-embedding baseline; in % per layer and position."""
    fig, axes = new_figure(ncols=2, width=13)
    ax_specific, ax_raw = axes[0]
    logit, tuned = (mean_table(specific[k]) for k in ("logit lens", "tuned lens"))
    raw_means = mean_table(raw)
    for position in POSITIONS:
        (line,) = ax_specific.plot(100 * logit[position], marker=".", label=position)
        ax_specific.plot(100 * tuned[position], ":", color=line.get_color())
        ax_raw.plot(100 * raw_means[position], marker=".", label=position)
    ax_raw.axhline(100 * embedding_rate, color="gray", linestyle="--", label="subject embedding")
    ax_specific.plot([], [], ":", color="gray", label="dotted: tuned lens")
    ax_specific.axhline(0, color="black", linewidth=0.8)
    label(ax_specific, titles[0], "layer", "own minus other-subject rate (points)")
    label(ax_raw, titles[1], "layer", "attributes rate (% of top-50 tokens)")
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_lens_kl(kl: pd.DataFrame, title: str) -> Figure:
    """KL(final ‖ readout) per layer, one line per column of ``kl`` (nats)."""
    fig, ax = new_figure()
    for name in kl.columns:  # the model's own text dotted, beside the headline text
        style = ("o" if "logit" in name else "s") + (":" if "own text" in name else "-")
        ax.plot(kl.index, kl[name], style, markersize=4, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label(ax, title, "layer", "KL(final ‖ lens) (nats)")
    return fig


def plot_enrichment(enrichment: EnrichmentResult, title: str) -> Figure:
    """The attributes rate at the measured layer per knocked-out window, against no knockout (%)."""
    rates = enrichment.table()
    fig, ax = new_figure()
    ax.plot(rates.index, 100 * rates.mlp, "o-", label="MLP sublayers zeroed")
    ax.plot(rates.index, 100 * rates.attn, "s-", label="attention sublayers zeroed")
    base = 100 * float(enrichment.base.mean())
    ax.axhline(base, color="gray", linestyle="--", label="no knockout")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label(
        ax,
        title,
        f"first of the {enrichment.window} zeroed layers",
        f"attributes rate at layer {enrichment.measure_layer} (%)",
    )
    return fig


def plot_extraction(
    rates: pd.DataFrame, blocked: pd.DataFrame, blocked_layers: range, title: str
) -> Figure:
    """Facts with an extraction event per layer (%): attention, MLP, attention with subject → last
    cut in ``blocked_layers``."""
    fig, ax = new_figure()
    ax.plot(rates.index, 100 * rates.attn, "o-", label="attention")
    ax.plot(rates.index, 100 * rates.mlp, "s-", label="MLP")
    cut = f"attention, subject→last cut in layers {blocked_layers.start}–{blocked_layers.stop - 1}"
    ax.plot(blocked.index, 100 * blocked.attn, "o:", label=cut)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    label(ax, title, "layer", "facts with an extraction event (%)")
    return fig


def plot_ov_hits(hits: pd.DataFrame, ov_top_k: int, title: str) -> Figure:
    """Per head (``hits``: layer, head, group, hit_rate, hit_rate_embedding), the share of facts
    whose prediction is in the top ``ov_top_k`` of its OV image (from hidden states, embeddings)."""
    fig, ax = new_figure(width=9)
    x = np.arange(len(hits))
    ax.bar(x - 0.2, 100 * hits.hit_rate, width=0.4, label="input: subject's hidden state")
    ax.bar(
        x + 0.2, 100 * hits.hit_rate_embedding, width=0.4, label="input: subject's token embeddings"
    )
    names = [
        f"L{r.layer}.H{r.head}" + ("" if r.group.startswith("top") else "\n(control)")
        for r in hits.itertuples()
    ]
    ax.set_xticks(x, names, fontsize=8)
    label(
        ax,
        title,
        "head (layer.head); the last ones are controls",
        f"facts with the attribute in the top {ov_top_k} (%)",
    )
    return fig
