"""Every table a notebook shows, through one helper: no index, text left, numbers formatted by kind.

``show_table(frame, kinds={"recovered": "%", "ce": "nats", "time": "ms"})`` returns a pandas
``Styler`` that JupyterLab and the HTML pages render the same way: the index hidden, text columns
left-aligned and wrapped, number columns right-aligned and formatted by their kind, the table as wide
as the page. Columns without a stated kind are formatted by their values (integers as counts,
floats with three significant digits). ``format_value`` formats one number the same way, for prose.

The reports (REPORT.md, README) are Markdown: ``markdown_table`` writes rows as a Markdown table.

Public names: ``KINDS``, ``format_value``, ``show_table``, ``markdown_table``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

__all__ = ["KINDS", "format_value", "markdown_table", "show_table"]


def _significant(value: float, digits: int = 3) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - exponent)
    return f"{value:,.{decimals}f}" if abs(value) < 1e6 else f"{value:.{digits}g}"


KINDS: dict[str, Callable[[float], str]] = {
    "%": lambda v: f"{100 * v:.1f}%",  # a fraction shown as a percentage
    "pct": lambda v: f"{v:.1f}%",  # already in percent
    "nats": lambda v: f"{v:.3f} nats",
    "ms": lambda v: f"{v:,.1f} ms",
    "s": lambda v: f"{v:,.1f} s",
    "x": lambda v: f"{v:.2f}×",  # a ratio such as a speed-up
    "count": lambda v: f"{int(round(v)):,}",
    "float": _significant,
}


def format_value(value: Any, kind: str | None = None) -> str:
    """One value as a table shows it: by ``kind`` (a key of ``KINDS``) or else by its type."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"unknown number kind {kind!r}; use one of {sorted(KINDS)}")
        return KINDS[kind](value)
    whole = isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000)
    return KINDS["count"](value) if whole else _significant(value)


def show_table(
    frame: pd.DataFrame, kinds: Mapping[str, str] | None = None, caption: str | None = None
) -> Styler:
    """``frame`` ready to display: index hidden, text left-aligned, numbers formatted by kind."""
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(frame.columns))
    if unknown:
        raise KeyError(f"kinds names columns the table lacks: {unknown}; its columns: {list(frame.columns)}")
    frame = frame.reset_index(drop=True)
    numeric = [
        c for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    text = [c for c in frame.columns if c not in numeric]
    styler = frame.style.hide(axis="index")
    for column in frame.columns:
        kind = kinds.get(column)
        styler = styler.format(lambda v, kind=kind: format_value(v, kind), subset=[column])
    styles = [
        {"selector": "", "props": [("width", "100%"), ("border-collapse", "collapse")]},
        {"selector": "th", "props": [("text-align", "left"), ("overflow-wrap", "anywhere")]},  # long names wrap
        {"selector": "td", "props": [("vertical-align", "top"), ("padding", "2px 8px")]},
    ]
    styler = styler.set_table_styles(styles)
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left", "white-space": "normal"})
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right", "white-space": "nowrap"})
    return styler.set_caption(caption) if caption else styler


def markdown_table(rows: list[dict]) -> str:
    """Rows (dicts; their keys, in order of first appearance, are the columns) as a Markdown table, '_none_'
    when there are none; a ``|`` or line break inside a cell is escaped."""
    if not rows:
        return "_none_"
    columns = list(pd.DataFrame(rows).columns)
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
