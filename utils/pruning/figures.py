"""Notebook 04's two multi-line figures, drawn on axes the notebook made (titles stay in the notebook).

* ``plot_refit_diagnostic``: tuned/untuned error against the ridge, held-out and in-sample, per
  calibration size, and this run's recomputed sample.
* ``plot_quality_vs_speedup``: cloze accuracy, perplexity and probes against the speed-up, per
  method, means over calibration seeds with the seeds' range as bars.

Public names: ``plot_refit_diagnostic``, ``plot_quality_vs_speedup``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = ["plot_quality_vs_speedup", "plot_refit_diagnostic"]

HELD, IN_SAMPLE = "tuned/untuned held-out", "tuned/untuned in-sample"


def plot_refit_diagnostic(ax: Axes, diagnostic: pd.DataFrame, live: pd.DataFrame) -> None:
    """The recorded diagnostic summary (per calibration size) and ``live`` (this run's sample, may be empty)."""
    for tokens, group in diagnostic.groupby("tokens"):
        ax.plot(group.ridge, group[HELD], marker="o", label=f"held-out, {tokens} tokens")
        ax.plot(group.ridge, group[IN_SAMPLE], marker="x", ls=":", label=f"in-sample, {tokens} tokens")
    if len(live):
        ax.plot(live.ridge, live[HELD], marker="s", color="black", ls="--", label="held-out, this run's sample")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")


def plot_quality_vs_speedup(axes: Sequence[Axes], rows: pd.DataFrame) -> None:
    """Three panels (cloze %, perplexity, probes in points) against the paper-formula speed-up."""
    columns = ["speedup_paper", "cloze_acc", "perplexity", "probe_above_chance"]
    groups = rows.groupby(["method", "target"], sort=False)[columns]
    mean, low, high = groups.mean(), groups.min(), groups.max()
    for name in rows.method.unique():
        m, lo, hi = mean.loc[name], low.loc[name], high.loc[name]
        style = dict(marker="o", lw=2.5 if name == "sprint" else 1.2,
                     ls=":" if name.startswith("sprint_") else "-", capsize=2)
        for ax, col, f in zip(axes, columns[1:], (100, 1, 100), strict=True):
            # a mean of equal per-seed values can round a hair outside [min, max]: clip at 0
            err = f * np.clip([m[col] - lo[col], hi[col] - m[col]], 0, None)
            ax.errorbar(m.speedup_paper, f * m[col], yerr=err, label=name, **style)
