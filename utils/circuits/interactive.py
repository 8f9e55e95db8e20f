"""The circuit figure, interactive: an SVG whose nodes and edges say what they are when hovered.

Not a step of the paper's method, but how a reader explores its circuits offline: the same nodes,
positions, colours and widths as ``utils.circuits.layout.plot_circuit`` (its ``circuit_nodes``,
``circuit_edges``, ``circuit_layout`` and styles), written as SVG text by this module, where each
node carries a ``<title>`` (the browser's hover tooltip) with its label, layer, position, attribution
and, for a transcoder feature, its top-activating contexts (the token in [[ ]]); each edge carries
its attribution. No JavaScript and no package beyond matplotlib's colour names: it works in
JupyterLab offline and on the exported HTML page (shown as HTML, since JupyterLab draws an
``image/svg+xml`` output as an image, whose tooltips a browser never shows).

* ``feature_contexts``: each feature node's top-activating contexts on held-out text.
* ``node_tooltip``: the text a node's tooltip holds.
* ``circuit_svg``: the figure as SVG text; ``interactive_circuit`` wraps it for display.

Public names: ``MAX_CONTEXTS``, ``feature_contexts``, ``node_tooltip``, ``circuit_svg``,
``interactive_circuit``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pandas as pd
from IPython.display import HTML
from matplotlib.colors import to_hex
from matplotlib.ticker import MaxNLocator
from transformer_lens import HookedTransformer

from utils import transcoders as T
from utils.circuits.layout import (
    MAX_NODES,
    X_LABEL,
    Y_LABEL,
    circuit_edges,
    circuit_layout,
    circuit_limits,
    circuit_nodes,
    column_names,
    edge_legend,
    edge_style,
    node_colour,
    widest_edge,
)
from utils.circuits.paths import Graph

__all__ = ["MAX_CONTEXTS", "circuit_svg", "feature_contexts", "interactive_circuit", "node_tooltip"]

MAX_CONTEXTS = 5  # contexts per feature tooltip (keeps the page far below utils.pages' 3 MB)
MAX_CONTEXT_CHARS = 160  # characters kept of one context
SIZE = (936, 792)  # px: the static figure's 13 x 11 inches at 72 px per inch, so points are pixels
MARGINS = (64, 16, 40, 120)  # px: left, right, top, bottom (room for the rotated token names)
MARKER_RADIUS = 3.9  # px: a scatter marker of 60 pt^2, as plot_circuit draws
EDGE_OPACITY = 0.55
HIT_WIDTH = 8  # px: the invisible stroke that catches the pointer on a thin edge
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")  # characters XML 1.0 forbids
STYLE = (
    ".sl-circuit .node, .sl-circuit .edge { cursor: help; } "
    ".sl-circuit .node:hover circle { stroke: #000; stroke-width: 2; } "
    ".sl-circuit .edge:hover .shown { stroke-opacity: 1; }"
)


def feature_contexts(
    model: HookedTransformer, transcoders: Mapping[int, Any], ev: Any, nodes: pd.DataFrame, k: int = MAX_CONTEXTS
) -> dict[tuple[int, int], pd.DataFrame]:
    """For each (layer, unit) row of ``nodes`` whose layer has a transcoder: its ``k`` top-activating
    contexts (``utils.transcoders.top_contexts``) on ``ev``'s held-out tokens, sinks left out."""
    found = {}
    for layer, part in nodes.groupby("layer"):
        if int(layer) in transcoders:
            acts = T.feature_acts(transcoders[int(layer)], ev.x[int(layer)]) * ev.keep[:, None]
            for unit in part.unit.astype(int).unique():
                found[(int(layer), int(unit))] = T.top_contexts(model, ev.tokens, acts[:, unit], k)
    return found


def _xml(text: str) -> str:
    """``text`` escaped for an SVG element's content, characters XML cannot hold dropped."""
    return escape(NOT_XML.sub("", text))


def _attr(text: str) -> str:
    """``text`` as a quoted, escaped XML attribute value."""
    return quoteattr(NOT_XML.sub("", text))


def node_tooltip(
    row: Any, columns: Sequence[str], label: str = "", contexts: pd.DataFrame | None = None,
    max_contexts: int = MAX_CONTEXTS,
) -> str:
    """A node's tooltip: what it is (layer, position and its token from ``columns``), its
    attribution to the root, and for a feature its ``label`` and top ``contexts`` (at most
    ``max_contexts``, each cut to ``MAX_CONTEXT_CHARS``). ``row`` is a ``circuit_nodes`` row."""
    token = lambda pos: f"'{columns[pos]}'" if 0 <= pos < len(columns) - 1 else "?"
    layer, pos = int(row.layer), int(row.pos)
    if row.kind == "target":
        head = f"{row.name}: the root, value {row.attribution:+.3f}"
    elif row.kind == "feature":
        head = f"L{layer} F{int(row.unit)}, an MLP feature at position {pos} ({token(pos)})"
    elif row.kind == "head":
        src = int(row.src)
        head = f"L{layer} H{int(row.unit)}: position {pos} ({token(pos)}) reads position {src} ({token(src)})"
    elif row.kind == "error":
        head = f"transcoder errors at layer {layer}, summed over positions"
    else:  # embeddings, biases: no unit to name
        head = f"{row.name} ({row.kind}) at layer {layer}, position {pos} ({token(pos)})"
    lines = [head] if row.kind == "target" else [head, f"attribution to the root {row.attribution:+.3f}"]
    if label:
        lines.append(label)
    if contexts is not None and len(contexts):
        lines.append("top contexts (activation, the token in [[ ]]):")
        lines += [f"{c.activation:.2f}  {c.context[:MAX_CONTEXT_CHARS]}" for c in contexts.head(max_contexts).itertuples()]
    return "\n".join(lines)


def _labels(features: pd.DataFrame | None) -> dict[tuple[int, int], str]:
    if features is None:
        return {}
    return {(int(r.layer), int(r.unit)): str(r.label) for r in features.itertuples()}


def circuit_svg(
    graph: Graph,
    token_labels: Sequence[str],
    title: str,
    labels: pd.DataFrame | None = None,
    contexts: Mapping[tuple[int, int], pd.DataFrame] | None = None,
    max_nodes: int = MAX_NODES,
    max_contexts: int = MAX_CONTEXTS,
) -> str:
    """``plot_circuit``'s figure as SVG text: the same nodes, positions, colours, widths and legend,
    each node with a hover tooltip (``node_tooltip``; feature labels from ``labels``, a frame of
    layer, unit, label such as ``circuit_key`` returns, contexts from ``feature_contexts``) and each
    edge with its attribution. All text is XML-escaped."""
    shown = circuit_nodes(graph, max_nodes)
    columns = column_names(token_labels)
    spots, centres = circuit_layout(shown, len(token_labels))
    edges = circuit_edges(graph, shown)
    biggest = widest_edge(edges)
    (x0, x1), (y0, y1) = circuit_limits(shown, centres)
    (width, height), (left, right, top, bottom) = SIZE, MARGINS
    px = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)
    py = lambda y: top + (y1 - y) / (y1 - y0) * (height - top - bottom)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="sl-circuit" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" font-family="sans-serif" '
           f'role="img" aria-label={_attr(title)}>',
           f"<style>{STYLE}</style>", f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
           'fill="none" stroke="#000" stroke-width="0.8"/>']
    out += _axes(columns, centres, (y0, y1), px, py, title)
    for e in edges.itertuples():
        (xa, ya), (xb, yb) = spots[e.parent], spots[e.child]
        colour, stroke = edge_style(e.attribution, biggest)
        ends = f'x1="{px(xb):.1f}" y1="{py(yb):.1f}" x2="{px(xa):.1f}" y2="{py(ya):.1f}"'
        out.append(f'<g class="edge"><title>{_xml(f"{e.child} → {e.parent}: attribution {e.attribution:+.3f}")}'
                   f'</title><line class="shown" {ends} stroke="{to_hex(colour)}" stroke-width="{stroke:.2f}" '
                   f'stroke-opacity="{EDGE_OPACITY}"/><line {ends} stroke="#000" stroke-opacity="0" '
                   f'stroke-width="{max(stroke, HIT_WIDTH):.2f}" pointer-events="stroke"/></g>')
    names, found = _labels(labels), contexts or {}
    for row in shown.itertuples():
        x, y = px(spots[row.name][0]), py(spots[row.name][1])
        key = (int(row.layer), int(row.unit)) if row.kind == "feature" else None
        tip = node_tooltip(row, columns, names.get(key, ""), found.get(key), max_contexts)
        out.append(f'<g class="node"><title>{_xml(tip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" '
                   f'r="{MARKER_RADIUS}" fill="{to_hex(node_colour(row.kind))}"/><text x="{x:.1f}" '
                   f'y="{y - 6:.1f}" font-size="8" text-anchor="middle" stroke="#fff" stroke-width="2.5" '
                   f'paint-order="stroke">{_xml(row.label)}</text></g>')
    out += _legend(biggest, left, height - bottom)
    return "\n".join([*out, "</svg>"])


def _axes(columns: Sequence[str], centres: Sequence[float], ylim: tuple[float, float], px, py, title: str) -> list[str]:
    """The title, axis names, the columns' tokens (rotated, as in ``plot_circuit``) and layer ticks."""
    width, height = SIZE
    left, _, top, bottom = MARGINS
    parts = [f'<text x="{width / 2}" y="{top - 14}" font-size="10" text-anchor="middle">{_xml(title)}</text>',
             f'<text x="{width / 2}" y="{height - 8}" font-size="10" text-anchor="middle">{_xml(X_LABEL)}</text>',
             f'<text x="14" y="{top + (height - top - bottom) / 2}" font-size="10" text-anchor="middle" '
             f'transform="rotate(-90 14 {top + (height - top - bottom) / 2})">{_xml(Y_LABEL)}</text>']
    base = height - bottom
    for name, centre in zip(columns, centres, strict=True):
        x = px(centre)
        parts.append(f'<text x="{x:.1f}" y="{base + 12}" font-size="8" text-anchor="end" '
                     f'transform="rotate(-60 {x:.1f} {base + 12})">{_xml(name)}</text>')
    for tick in MaxNLocator(integer=True).tick_values(*ylim):
        if ylim[0] <= tick <= ylim[1]:
            parts.append(f'<text x="{left - 4}" y="{py(tick) + 3:.1f}" font-size="8" text-anchor="end">{tick:g}</text>')
    return parts


def _legend(biggest: float, x: float, bottom: float) -> list[str]:
    """``plot_circuit``'s edge legend (colour: sign; width: |attribution|), in the lower left corner."""
    handles = edge_legend(biggest)
    top = bottom - 8 - 14 * len(handles)
    parts = [f'<rect x="{x + 6}" y="{top - 6}" width="190" height="{14 * len(handles) + 8}" fill="#fff" '
             'fill-opacity="0.9" stroke="#ccc"/>']
    for i, h in enumerate(handles):
        y = top + 4 + 14 * i
        parts.append(f'<line x1="{x + 12}" y1="{y}" x2="{x + 36}" y2="{y}" stroke="{to_hex(h.get_color())}" '
                     f'stroke-width="{h.get_linewidth():.2f}"/><text x="{x + 42}" y="{y + 3}" font-size="8">'
                     f"{_xml(h.get_label())}</text>")
    return parts


def interactive_circuit(graph: Graph, token_labels: Sequence[str], title: str, **options: Any) -> HTML:
    """``circuit_svg`` for display in JupyterLab and on the exported page: hover a node for its label
    and top contexts, an edge for its attribution (``options`` go to ``circuit_svg``)."""
    return HTML(circuit_svg(graph, token_labels, title, **options))
