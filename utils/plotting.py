"""Small matplotlib helpers so every figure has labelled axes, units and a finding as title.

Public names: ``new_figure`` (a figure and its axes at the repository's size), ``label`` (title,
axis labels with units, grid and legend), ``drawable`` (text the figures' font can draw), ``FIGSIZE``.
"""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import font_manager, ft2font
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["FIGSIZE", "drawable", "label", "new_figure"]

FIGSIZE = (7.0, 4.0)


def new_figure(
    ncols: int = 1, nrows: int = 1, width: float | None = None, height: float | None = None
) -> tuple[Figure, Axes | np.ndarray]:
    """A figure and its axes at the repository's default size (one Axes, or a [nrows, ncols] array)."""
    w = width or FIGSIZE[0] * (1 if ncols == 1 else 0.75 * ncols)
    h = height or FIGSIZE[1] * nrows
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)
    return fig, (axes[0, 0] if ncols * nrows == 1 else axes)


def label(ax: Axes, title: str, xlabel: str, ylabel: str, legend: bool = True) -> None:
    """Set a finding-style title and axis labels (with units), add a legend if there are labels."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


@functools.lru_cache(maxsize=1)
def _font_code_points() -> frozenset[int]:
    """The code points of the font matplotlib draws text with by default."""
    path = font_manager.findfont(font_manager.FontProperties(family=plt.rcParams["font.family"]))
    return frozenset(ft2font.FT2Font(path).get_charmap())


def drawable(text: str) -> str:
    """``text`` with each character the figures' font has no glyph for (CJK, Thai, emoji in a
    tokenizer's vocabulary) written as its ``\\uXXXX`` escape, so a figure shows it and never warns."""
    known = _font_code_points()
    return "".join(c if ord(c) in known or c.isspace() else ascii(c)[1:-1] for c in text)
