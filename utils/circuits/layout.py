"""The circuit figure: which nodes of a path-search graph to show, where, and how to draw them.

Not a step of the paper's method, but how its circuits (``utils.circuits.paths.Graph``) are read:
a layered graph, one column per token position, one row per layer.

* ``circuit_nodes``: the nodes shown (transcoder error nodes merged per layer, the largest kept).
* ``circuit_edges``: the edges between them, summed per pair.
* ``circuit_layout``: each node's (x, y), so that no two labels overlap.
* ``circuit_limits``, ``column_names``, ``edge_style``, ``widest_edge``, ``node_colour``,
  ``edge_legend``: the figure's extent, column names, colours, widths and legend, shared with the
  interactive version (``utils.circuits.interactive``).
* ``plot_circuit``: draws it on a matplotlib axis.

Public names: ``MAX_NODES``, ``X_LABEL``, ``Y_LABEL``, ``circuit_nodes``, ``circuit_edges``,
``circuit_layout``, ``circuit_limits``, ``column_names``, ``edge_style``, ``widest_edge``,
``node_colour``, ``edge_legend``, ``plot_circuit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from utils.circuits.paths import Graph

__all__ = [
    "MAX_NODES",
    "X_LABEL",
    "Y_LABEL",
    "circuit_edges",
    "circuit_layout",
    "circuit_limits",
    "circuit_nodes",
    "column_names",
    "edge_legend",
    "edge_style",
    "node_colour",
    "plot_circuit",
    "widest_edge",
]

MAX_NODES = 25  # nodes a circuit figure shows
ERROR_KINDS = ("tc_error",)
HEAD_ROW_KINDS = ("head", "embed", "attn_bias")  # drawn at their layer; the other kinds half a layer above
X_LABEL = "token position (input token)"
Y_LABEL = "layer (heads at the layer, MLP features +0.5)"


def circuit_nodes(graph: Graph, max_nodes: int = MAX_NODES) -> pd.DataFrame:
    """The nodes a circuit figure shows: every transcoder error node summed into one per layer, then
    the ``max_nodes`` largest by |attribution to the root| (the root always kept). Columns: name,
    kind, layer, pos, unit, attribution, label (short)."""
    rows = [{"name": name, **{k: node.get(k) for k in ("kind", "layer", "pos", "unit", "src", "attribution")}}
            for name, node in graph.nodes.items()]
    table = pd.DataFrame(rows)
    errors = table[table.kind.isin(ERROR_KINDS)]
    merged = errors.groupby("layer", as_index=False).attribution.sum().assign(
        kind="error", pos=-1, unit=-1, name=lambda t: [f"errors L{int(layer)}" for layer in t.layer]
    )
    table = pd.concat([table[~table.kind.isin(ERROR_KINDS)], merged], ignore_index=True)
    root = table[table.kind == "target"]
    rest = table[table.kind != "target"].reindex(
        table[table.kind != "target"].attribution.abs().sort_values(ascending=False).index
    )
    table = pd.concat([root, rest.head(max_nodes - len(root))], ignore_index=True)
    return table.assign(label=[_short_label(r) for r in table.itertuples()])


def _short_label(row) -> str:
    kind = row.kind
    if kind in ("feature", "head"):
        return f"{kind[0].upper()}{int(row.unit)}"
    return {
        "target": "logit diff",
        "embed": "emb",
        "error": "err",
        "tc_bias": "bias",
        "mlp": "MLP",
        "attn_bias": "attn b",
    }.get(kind, kind)


def circuit_edges(graph: Graph, shown: pd.DataFrame) -> pd.DataFrame:
    """The graph's edges between shown nodes (error nodes mapped to their layer's merged node),
    summed per (parent, child)."""
    names = set(shown.name)
    error_of = {n: f"errors L{int(node['layer'])}" for n, node in graph.nodes.items() if node.get("kind") in ERROR_KINDS}
    edges = graph.table().assign(child=lambda t: t.child.map(lambda c: error_of.get(c, c)))
    edges = edges[edges.parent.isin(names) & edges.child.isin(names)]
    return edges.groupby(["parent", "child"], as_index=False).attribution.sum()


def circuit_layout(shown: pd.DataFrame, n_pos: int) -> tuple[dict[str, tuple[float, float]], list[float]]:
    """Where ``plot_circuit`` draws each node of ``shown`` (name -> (x, y)) and the centre of each
    column (the ``n_pos`` token positions, then the error column). A column has two lanes, heads
    (at their layer) on the left and MLP terms (half a layer up) on the right, so nodes one above
    the other in a lane are a whole layer apart; nodes sharing a spot sit side by side, one unit
    apart, and a column is as wide as its lanes need."""
    top = float(shown.layer.max()) + 1.5

    def spot(row) -> tuple[int, str, float]:
        if row.kind == "target":
            return int(row.pos), "root", top
        column = n_pos if row.kind == "error" else int(row.src if row.kind == "head" else row.pos)
        lane = "heads" if row.kind in HEAD_ROW_KINDS else "mlp"
        return column, lane, float(row.layer) + (0.0 if lane == "heads" else 0.5)

    by_spot: dict[tuple[int, str, float], list[str]] = {}
    for row in shown.itertuples():
        by_spot.setdefault(spot(row), []).append(row.name)
    lanes = {(column, lane): 0 for column in range(n_pos + 1) for lane in ("heads", "mlp")}
    for (column, lane, _), names in by_spot.items():
        if lane != "root":
            lanes[(column, lane)] = max(lanes[(column, lane)], len(names))
    widths = [max(1, lanes[(c, "heads")] + lanes[(c, "mlp")]) for c in range(n_pos + 1)]
    lefts = np.cumsum([0, *widths[:-1]])
    centres = [float(left + width / 2) for left, width in zip(lefts, widths, strict=True)]
    where = {}
    for (column, lane, y), names in by_spot.items():
        used = lanes[(column, "heads")] + lanes[(column, "mlp")]
        first = {"heads": 0, "mlp": lanes[(column, "heads")], "root": (used - len(names)) / 2}[lane]
        start = lefts[column] + (widths[column] - used) / 2 + first  # lanes centred in the column
        for i, name in enumerate(names):
            where[name] = (float(start + i + 0.5), y)
    return where, centres


def circuit_limits(shown: pd.DataFrame, centres: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The figure's (x, y) extent in layout units: every column, the root and the legend's room below."""
    return (-0.3, centres[-1] + 0.8), (-1.7, float(shown.layer.max()) + 3.5)


def column_names(token_labels: Sequence[str]) -> list[str]:
    """Each column's name: the input tokens (escapes shown, as repr does), then the error column."""
    return [repr(t)[1:-1] for t in token_labels] + ["errors"]


def edge_style(attribution: float, biggest: float) -> tuple[str, float]:
    """An edge's colour (blue raises the root, red lowers it) and width in points (by |attribution|,
    the widest ``biggest``)."""
    return "tab:blue" if attribution > 0 else "tab:red", 0.6 + 5 * abs(attribution) / (biggest or 1.0)


def widest_edge(edges: pd.DataFrame) -> float:
    """The largest |attribution| among ``edges`` (``circuit_edges``), 1 when there are none."""
    return float(edges.attribution.abs().max()) if len(edges) else 1.0


def node_colour(kind: str) -> str:
    """A node's colour: orange for the merged error nodes, dark grey for the rest."""
    return "tab:orange" if kind == "error" else "0.2"


def edge_legend(biggest: float) -> list[Line2D]:
    """What an edge's colour (sign) and width (|attribution|, widest = ``biggest``) mean."""
    return [
        Line2D([], [], color=edge_style(1.0, 1.0)[0], linewidth=2.5, label="raises the target"),
        Line2D([], [], color=edge_style(-1.0, 1.0)[0], linewidth=2.5, label="lowers the target"),
        Line2D([], [], color="0.4", linewidth=edge_style(0.5, 1.0)[1], label=f"width: |attribution| ({biggest / 2:.2f})"),
        Line2D([], [], color="0.4", linewidth=edge_style(1.0, 1.0)[1], label=f"widest: {biggest:.2f}"),
    ]


def plot_circuit(graph: Graph, ax: Axes, token_labels: Sequence[str], title: str, max_nodes: int = MAX_NODES) -> pd.DataFrame:
    """A layered circuit: one column per token position (plus one for the per-layer error nodes),
    one row per layer (a head at its layer and the source position it reads, MLP features half a
    layer above, the root on top; see ``circuit_layout``), at most ``max_nodes`` nodes with short
    labels, edge width by |attribution| (blue raises the root, red lowers it; a legend says so).
    Returns the nodes shown."""
    shown = circuit_nodes(graph, max_nodes)
    n_pos = len(token_labels)
    spots, centres = circuit_layout(shown, n_pos)
    edges = circuit_edges(graph, shown)
    biggest = widest_edge(edges)
    for e in edges.itertuples():
        (x0, y0), (x1, y1) = spots[e.parent], spots[e.child]
        colour, width = edge_style(e.attribution, biggest)
        ax.plot([x1, x0], [y1, y0], color=colour, linewidth=width, alpha=0.55, zorder=1)
    for row in shown.itertuples():
        x, y = spots[row.name]
        ax.scatter([x], [y], s=60, color=node_colour(row.kind), zorder=2)
        text = ax.annotate(row.label, (x, y), fontsize=8, xytext=(0, 6), textcoords="offset points", ha="center", zorder=3)
        text.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="white")])
    ax.set_xticks(centres, column_names(token_labels), rotation=60, fontsize=8)
    xlim, ylim = circuit_limits(shown, centres)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=10)
    ax.legend(handles=edge_legend(biggest), loc="lower left", fontsize=8, framealpha=0.9)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    return shown
