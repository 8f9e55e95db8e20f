"""The greedy path search back from a target: a circuit as a graph of attributed nodes.

Dunefsky, Chlenski & Nanda 2024, circuit analysis with transcoders (computational subgraphs): from a
target (a logit difference, a feature), take its largest contributions, expand each expandable one
(a transcoder feature or an attention head) into the target of its own inputs
(``utils.circuits.attribution.expand``), and repeat; the edges kept form the circuit. Every edge's
weight is an exact attribution from ``contributions``, in the root's units.

* ``path_search``: the beam search; ``Graph`` holds its nodes, edges and expanded targets.
* ``top_contributions``: which of a node's contributions become edges (one step of the search).
* ``node_id``: a node's readable name (``L5.F123@7``, ``L4.H2 7<-3``, ``embed@2`` ...).

Public names: ``Graph``, ``node_id``, ``path_search``, ``top_contributions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from transformer_lens import HookedTransformer

from utils.circuits.attribution import (
    EXPANDABLE,
    Target,
    Trace,
    contributions,
    expand,
    target_value,
)

__all__ = ["Graph", "node_id", "path_search", "top_contributions"]


@dataclass
class Graph:
    """A circuit: nodes (by id, with their attribution to the root) and weighted edges."""

    nodes: dict[str, dict] = field(default_factory=dict)
    edges: list[dict] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)  # expanded nodes' targets

    def table(self) -> pd.DataFrame:
        """The edges as a DataFrame (parent, child, attribution)."""
        return pd.DataFrame(self.edges, columns=["parent", "child", "attribution"])


def node_id(row: Mapping[str, Any]) -> str:
    """A readable node name: L5.F123@7, L4.H2 7<-3, embed 'x'@2, L3.error@7 ..."""
    layer, pos, kind = int(row["layer"]), int(row["pos"]), row["kind"]
    if kind == "feature":
        return f"L{layer}.F{int(row['unit'])}@{pos}"
    if kind == "head":
        return f"L{layer}.H{int(row['unit'])} {pos}<-{int(row['src'])}"
    if kind == "embed":
        return f"embed@{pos}"
    return f"L{layer}.{kind}@{pos}"


def top_contributions(table: pd.DataFrame, branches: int) -> pd.DataFrame:
    """The rows of a contribution table that become edges: its ``branches`` largest expandable rows
    (features, heads), then its ``branches`` largest leaf rows, each by decreasing |attribution|."""
    table = table.reindex(table.attribution.abs().sort_values(ascending=False).index)
    expandable = table.kind.isin(EXPANDABLE)
    return pd.concat([table[expandable].head(branches), table[~expandable].head(branches)])


def path_search(
    model: HookedTransformer,
    tr: Trace,
    transcoders: Mapping[int, Any],
    root: Target,
    root_name: str = "target",
    iterations: int = 3,
    branches: int = 4,
    beam: int = 6,
    choose: Callable[[pd.DataFrame, int], pd.DataFrame] | None = None,
    feature_fn: Callable | None = None,
    head_fn: Callable | None = None,
) -> Graph:
    """Greedy beam search back from ``root``: each round, every frontier node's ``branches``
    largest expandable contributions (features, heads; by |attribution|) become edges, and so do
    its ``branches`` largest leaf terms (embeddings, errors, biases, untranscoded MLPs), so error
    terms stay visible without crowding out the paths; the ``beam`` largest expandable children
    form the next frontier. A node reached from several parents is expanded once, with the sum of
    their targets, so its edges carry its whole attribution to the root. Attributions are in root units.
    ``choose`` (default ``top_contributions``) picks each node's edges; ``feature_fn`` and ``head_fn``
    compute the feature and head terms (``contributions``' defaults); a learner's own in notebook 03."""
    graph = Graph()
    graph.nodes[root_name] = {
        "kind": "target",
        "layer": root.layer + (1.5 if root.site == "final" else 0),
        "pos": root.pos,
        "attribution": target_value(tr, root),
    }
    frontier: list[tuple[str, Target]] = [(root_name, root)]
    for _ in range(iterations):
        children: dict[str, tuple[float, Target]] = {}  # node -> (attribution, target) summed over parents
        for name, target in frontier:
            graph.targets[name] = target
            table = contributions(model, tr, target, transcoders, feature_fn, head_fn)
            top = (choose or top_contributions)(table, branches)
            for row in top.to_dict("records"):
                child = node_id(row)
                graph.nodes.setdefault(child, {**row, "attribution": 0.0})
                graph.nodes[child]["attribution"] += row["attribution"]
                graph.edges.append(
                    {"parent": name, "child": child, "attribution": row["attribution"]}
                )
                if row["kind"] in EXPANDABLE:
                    nxt = expand(model, tr, transcoders, row, target)
                    if nxt is not None:
                        total, seen = children.get(child, (0.0, None))
                        children[child] = (total + row["attribution"], nxt if seen is None else seen.plus(nxt))
        fresh = [(name, c) for name, c in children.items() if name not in graph.targets]  # expand each node once
        fresh.sort(key=lambda item: -abs(item[1][0]))
        frontier = [(name, t) for name, (_, t) in fresh[:beam]]
        if not frontier:
            break
    return graph
