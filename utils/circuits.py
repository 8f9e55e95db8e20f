"""Notebook 03's computations: circuit analysis through transcoders (Dunefsky, Chlenski & Nanda 2024).

With transcoders in place of the MLPs, the residual stream at any point is a sum of terms that are
each linear in something simple: the token embedding, transcoder features (activation x decoder
row), attention heads (pattern x OV-mapped source vector), and explicit error and bias terms. Reading
a target direction ``v`` (a later feature's encoder column, or a logit direction) off that sum, with
each norm's scale held at its value on the prompt (as the paper does), every term's contribution is
exact and they add up to the target's pre-activation.

* ``trace``: one forward pass recording what the attribution needs (and each transcoder's features;
  attention-sink positions keep the real MLP, as in the spliced model).
* ``Target`` / ``contributions``: every upstream term's contribution to a target, errors included;
  ``feature_attributions`` / ``head_terms`` are the two kinds of term; ``error_share`` how much the
  errors carry.
* ``expand`` / ``path_search``: targets for a feature's or head's own inputs, so attributions chain
  along paths; a beam search back from a target; ``plot_circuit`` draws it as a layered graph.
* Greater-than: ``layer_effects`` (per-layer mean-ablation), ``unit_scores`` / ``top_units``, and
  ``features_kept`` / ``neurons_kept`` (the rest mean-ablated), ``precision_at_k``.
* ``feature_weights`` / ``ov_weights``: input-invariant connections, tested against a permutation
  null (``permuted_correlation_null``) and by top-k overlap (``topk_overlap``).
* Blind case study: ``layer0_hypotheses`` (from layer-0 features, directly and through heads' OV
  circuits), ``blind_scores`` (its hit rate vs another feature's hypothesis), ``rating_sheet``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib import patheffects
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import transcoders as T
from utils.greater_than import (  # noqa: F401  (the greater-than task lives there; names kept for callers)
    GT_TEMPLATE,
    GreaterThan,
    greater_than_prompts,
    later_earlier,
    prob_diff,
    spread_starts,
)
from utils.prompts import logits_at
from utils.transcoders import mlp_hooks

Site = Literal["attn", "mlp", "final"]  # where a target reads the residual stream
EXPANDABLE = ("feature", "head")  # node kinds whose own inputs can be traced further


# ----------------------------------------------------------------------------- forward trace


@dataclass
class Trace:
    """What one prompt's forward pass leaves for attribution (batch of one; [pos, ...] tensors)."""

    tokens: torch.Tensor  # [pos]
    embed: torch.Tensor  # [pos, d]
    resid: dict[str, torch.Tensor]  # "pre{l}" / "mid{l}" / "final" -> [pos, d]
    scale: dict[str, torch.Tensor]  # "attn{l}" / "mlp{l}" / "final" -> [pos], each norm's RMS scale
    pattern: torch.Tensor  # [layer, head, dst, src]
    values: torch.Tensor  # [layer, pos, head, d_head], GQA values expanded to every query head
    attn_out: torch.Tensor  # [layer, pos, d]
    mlp_out: torch.Tensor  # [layer, pos, d]
    sinks: torch.Tensor  # [pos] True at attention sinks, where every MLP keeps its real write
    acts: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [pos, d_sae]
    tc_out: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [pos, d]


@torch.no_grad()
def trace(model: HookedTransformer, tokens: torch.Tensor, transcoders: Mapping[int, Any]) -> Trace:
    """Run ``tokens`` ([pos] or [1, pos]) once and record embeddings, residual streams, norm scales,
    attention patterns and values, sublayer writes, and each transcoder's features and output
    (features are zero at attention sinks: the spliced model keeps the real MLP write there)."""
    tokens = tokens.reshape(-1).to(model.cfg.device)
    _, cache = model.run_with_cache(tokens[None])
    n_layers = model.cfg.n_layers
    repeat = model.cfg.n_heads // (model.cfg.n_key_value_heads or model.cfg.n_heads)

    def stack(name: str) -> torch.Tensor:
        return torch.stack([cache[name.format(layer)][0] for layer in range(n_layers)])

    resid = {"final": cache[f"blocks.{n_layers - 1}.hook_resid_post"][0]}
    scale = {"final": cache["ln_final.hook_scale"][0, :, 0]}
    for layer in range(n_layers):
        resid[f"pre{layer}"] = cache[f"blocks.{layer}.hook_resid_pre"][0]
        resid[f"mid{layer}"] = cache[f"blocks.{layer}.hook_resid_mid"][0]
        scale[f"attn{layer}"] = cache[f"blocks.{layer}.ln1.hook_scale"][0, :, 0]
        scale[f"mlp{layer}"] = cache[f"blocks.{layer}.ln2.hook_scale"][0, :, 0]
    out = Trace(
        tokens=tokens,
        embed=cache["hook_embed"][0],
        resid=resid,
        scale=scale,
        pattern=stack("blocks.{}.attn.hook_pattern"),
        values=stack("blocks.{}.attn.hook_v").repeat_interleave(repeat, dim=2),
        attn_out=stack("blocks.{}.hook_attn_out"),
        mlp_out=stack("blocks.{}.hook_mlp_out"),
        sinks=T.model_sinks(model, tokens, cache[T.sink_hook(model)][0]),
    )
    for layer, tc in transcoders.items():
        acts = tc.encode(cache[mlp_hooks(layer)[0]][0]) * ~out.sinks[:, None]
        out.acts[layer] = acts
        out.tc_out[layer] = tc.decode(acts)
    return out


# ----------------------------------------------------------------------------- attribution


@dataclass(frozen=True)
class Target:
    """A direction read off the residual stream: value = resid[site, layer, pos] . vector / scale + bias.

    ``site`` "mlp" reads layer ``layer``'s MLP input (after its attention), "attn" its attention
    input (values), "final" the final norm's input. ``vector`` is in residual-stream units; the
    norm's scale at ``pos`` divides it (held constant, as in the paper).
    """

    layer: int
    site: Site
    pos: int
    vector: torch.Tensor
    bias: float = 0.0

    def key(self) -> tuple:
        """A hashable description (without the vector)."""
        return (self.site, self.layer, self.pos)

    def plus(self, other: Target) -> Target:
        """The sum of two targets read at the same site (a node reached from two parents)."""
        if other.key() != self.key():
            raise ValueError(f"cannot add targets read at {self.key()} and {other.key()}")
        return replace(self, vector=self.vector + other.vector, bias=self.bias + other.bias)


def _resid_key(target: Target) -> str:
    return {"mlp": f"mid{target.layer}", "attn": f"pre{target.layer}", "final": "final"}[
        target.site
    ]


def scale_key(target: Target) -> str:
    """The key of the norm scale a target is read through (``Trace.scale``)."""
    return {"mlp": f"mlp{target.layer}", "attn": f"attn{target.layer}", "final": "final"}[
        target.site
    ]


def upstream_layers(target: Target, n_layers: int) -> tuple[range, range]:
    """The attention layers and MLP layers whose writes the target reads."""
    if target.site == "final":
        return range(n_layers), range(n_layers)
    if target.site == "mlp":
        return range(target.layer + 1), range(target.layer)
    return range(target.layer), range(target.layer)


def target_value(tr: Trace, target: Target) -> float:
    """The target's value computed from the recorded forward pass (resid . vector / scale + bias)."""
    resid = tr.resid[_resid_key(target)][target.pos]
    return float(resid @ target.vector / tr.scale[scale_key(target)][target.pos]) + target.bias


@torch.no_grad()
def contributions(
    model: HookedTransformer, tr: Trace, target: Target, transcoders: Mapping[int, Any]
) -> pd.DataFrame:
    """Every upstream term's contribution to ``target`` (a row each), so that their sum plus
    ``target.bias`` equals ``target_value``.

    Columns: kind (embed / feature / tc_error / tc_bias / mlp (a layer without transcoder, or any
    layer at an attention sink) / head /
    attn_bias), layer, pos (where the term is written), unit (token, feature or head), src (a head's
    source position, else -1), attribution. A feature's attribution is activation x (W_dec[i] . v)
    and ``weight`` holds the input-invariant part W_dec[i] . v.
    """
    v = target.vector / tr.scale[scale_key(target)][target.pos]
    p = target.pos
    rows = [_row("embed", -1, p, int(tr.tokens[p]), float(tr.embed[p] @ v))]
    attn_layers, mlp_layers = upstream_layers(target, model.cfg.n_layers)
    for layer in mlp_layers:
        if layer not in transcoders or bool(tr.sinks[p]):
            rows.append(_row("mlp", layer, p, -1, float(tr.mlp_out[layer, p] @ v)))
            continue
        tc = transcoders[layer]
        weights = tc.W_dec @ v
        terms = feature_attributions(tr.acts[layer][p], tc.W_dec, v)
        active = torch.nonzero(tr.acts[layer][p] > 0).flatten()
        for i in active.tolist():
            rows.append({**_row("feature", layer, p, i, float(terms[i])), "weight": float(weights[i])})
        rows.append(_row("tc_bias", layer, p, -1, float(tc.b_dec @ v)))
        rows.append(
            _row("tc_error", layer, p, -1, float((tr.mlp_out[layer, p] - tr.tc_out[layer][p]) @ v))
        )
    for layer in attn_layers:
        attn = model.blocks[layer].attn
        per_source = torch.stack([
            head_terms(tr.pattern[layer, h, p, : p + 1], tr.values[layer, : p + 1, h], attn.W_O[h], v)
            for h in range(attn.W_O.shape[0])
        ])  # [head, src]
        for h, s in torch.nonzero(per_source.abs() > 0).tolist():
            rows.append(_row("head", layer, p, h, float(per_source[h, s]), src=s))
        rows.append(_row("attn_bias", layer, p, -1, float(attn.b_O @ v)))
    return pd.DataFrame(rows)


def feature_attributions(acts: torch.Tensor, w_dec: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Each feature's contribution to a target read with direction ``v`` (already divided by the
    norm's scale): activation x (W_dec[i] . v); acts [d_sae], w_dec [d_sae, d], v [d] -> [d_sae]."""
    return acts * (w_dec @ v)


def head_terms(pattern: torch.Tensor, values: torch.Tensor, w_o: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One head's contribution to a target with direction ``v`` from each source position, the
    pattern frozen: pattern[s] x (values[s] W_O . v); pattern [src], values [src, d_head],
    w_o [d_head, d], v [d] -> [src]."""
    return pattern * (values @ (w_o @ v))


def _row(kind: str, layer: int, pos: int, index: int, attribution: float, src: int = -1) -> dict:
    return {
        "kind": kind,
        "layer": layer,
        "pos": pos,
        "unit": index,
        "src": src,
        "attribution": attribution,
        "weight": float("nan"),
    }


def feature_target(
    tr: Trace,
    transcoders: Mapping[int, Any],
    layer: int,
    pos: int,
    feature: int,
    scale: float = 1.0,
) -> Target:
    """The pre-activation of transcoder ``feature`` at (layer, pos), times ``scale``."""
    tc = transcoders[layer]
    return Target(
        layer, "mlp", pos, tc.W_enc[:, feature] * scale, float(encoder_bias(tc)[feature]) * scale
    )


def encoder_bias(transcoder: Any) -> torch.Tensor:
    """The constant in a feature's pre-activation x . W_enc + b (folding a pre-bias if it has one)."""
    pre = getattr(transcoder, "b_pre", None)
    return transcoder.b_enc if pre is None else transcoder.b_enc - pre @ transcoder.W_enc


def logit_target(
    model: HookedTransformer, pos: int, up: Sequence[int], down: Sequence[int]
) -> Target:
    """mean logit of tokens ``up`` minus mean logit of tokens ``down`` at ``pos``."""
    vector = model.W_U[:, list(up)].mean(1) - model.W_U[:, list(down)].mean(1)
    bias = float(model.b_U[list(up)].mean() - model.b_U[list(down)].mean())
    return Target(model.cfg.n_layers - 1, "final", pos, vector, bias)


def expand(
    model: HookedTransformer,
    tr: Trace,
    transcoders: Mapping[int, Any],
    row: Mapping[str, Any],
    parent: Target,
) -> Target | None:
    """The target whose upstream contributions chain ``row``'s attribution to ``parent`` one step back.

    A feature's contribution is activation x c with c = W_dec[i] . v; while it is active its
    pre-activation, read with vector c W_enc[:, i], has upstream terms that add up to the same
    contribution. A head's contribution is the source residual read through its OV circuit with the
    pattern weight; its value bias becomes the target's constant. Other kinds are leaves (None).
    """
    v = parent.vector / tr.scale[scale_key(parent)][parent.pos]
    layer, pos, index = int(row["layer"]), int(row["pos"]), int(row["unit"])
    if row["kind"] == "feature":
        c = float(transcoders[layer].W_dec[index] @ v)
        return feature_target(tr, transcoders, layer, pos, index, c)
    if row["kind"] == "head":
        attn = model.blocks[layer].attn
        src = int(row["src"])
        weight = tr.pattern[layer, index, pos, src]
        out_dir = attn.W_O[index] @ v  # [d_head]
        vector = weight * (attn.W_V[index] @ out_dir)
        bias = float(weight * (attn.b_V[index] @ out_dir))
        return Target(layer, "attn", src, vector, bias)
    return None


# ----------------------------------------------------------------------------- path search


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


def path_search(
    model: HookedTransformer,
    tr: Trace,
    transcoders: Mapping[int, Any],
    root: Target,
    root_name: str = "target",
    iterations: int = 3,
    branches: int = 4,
    beam: int = 6,
) -> Graph:
    """Greedy beam search back from ``root``: each round, every frontier node's ``branches``
    largest expandable contributions (features, heads; by |attribution|) become edges, and so do
    its ``branches`` largest leaf terms (embeddings, errors, biases, untranscoded MLPs), so error
    terms stay visible without crowding out the paths; the ``beam`` largest expandable children
    form the next frontier. A node reached from several parents is expanded once, with the sum of
    their targets, so its edges carry its whole attribution to the root. Attributions are in root units."""
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
            table = contributions(model, tr, target, transcoders)
            table = table.reindex(table.attribution.abs().sort_values(ascending=False).index)
            expandable = table.kind.isin(EXPANDABLE)
            top = pd.concat([table[expandable].head(branches), table[~expandable].head(branches)])
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


MAX_NODES = 25  # nodes a circuit figure shows
ERROR_KINDS = ("tc_error",)


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


HEAD_ROW_KINDS = ("head", "embed", "attn_bias")  # drawn at their layer; the other kinds half a layer above


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


def plot_circuit(graph: Graph, ax, token_labels: Sequence[str], title: str, max_nodes: int = MAX_NODES) -> pd.DataFrame:
    """A layered circuit: one column per token position (plus one for the per-layer error nodes),
    one row per layer (a head at its layer and the source position it reads, MLP features half a
    layer above, the root on top; see ``circuit_layout``), at most ``max_nodes`` nodes with short
    labels, edge width by |attribution| (blue raises the root, red lowers it). Returns the nodes shown."""
    shown = circuit_nodes(graph, max_nodes)
    n_pos = len(token_labels)
    spots, centres = circuit_layout(shown, n_pos)
    edges = circuit_edges(graph, shown)
    biggest = float(edges.attribution.abs().max()) if len(edges) else 1.0
    for e in edges.itertuples():
        (x0, y0), (x1, y1) = spots[e.parent], spots[e.child]
        ax.plot([x1, x0], [y1, y0], color="tab:blue" if e.attribution > 0 else "tab:red",
                linewidth=0.6 + 5 * abs(e.attribution) / (biggest or 1.0), alpha=0.55, zorder=1)
    for row in shown.itertuples():
        x, y = spots[row.name]
        ax.scatter([x], [y], s=60, color="0.2" if row.kind != "error" else "tab:orange", zorder=2)
        text = ax.annotate(row.label, (x, y), fontsize=8, xytext=(0, 6), textcoords="offset points", ha="center", zorder=3)
        text.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="white")])
    ax.set_xticks(centres, [repr(t)[1:-1] for t in token_labels] + ["errors"], rotation=60, fontsize=8)
    ax.set_xlim(-0.3, centres[-1] + 0.8)
    ax.set_ylim(-1.7, float(shown.layer.max()) + 3.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("token position (input token)")
    ax.set_ylabel("layer (heads at the layer, MLP features +0.5)")
    return shown


def plot_graph(graph: Graph, ax, title: str) -> None:
    """Draw a circuit: x = token position, y = layer (heads at the layer, MLP features half a layer
    up), edge width proportional to |attribution|, blue positive, red negative."""

    def place(node: dict) -> tuple[float, float]:
        kind = node["kind"]
        x = float(node["pos"]) + (0.25 if kind == "head" else 0.0)
        y = float(node["layer"]) + (
            0.5 if kind in ("feature", "tc_error", "tc_bias", "mlp") else 0.0
        )
        return x, y

    spots = {name: place(node) for name, node in graph.nodes.items()}
    biggest = max((abs(e["attribution"]) for e in graph.edges), default=1.0) or 1.0
    for e in graph.edges:
        (x0, y0), (x1, y1) = spots[e["parent"]], spots[e["child"]]
        ax.plot(
            [x1, x0],
            [y1, y0],
            color="tab:blue" if e["attribution"] > 0 else "tab:red",
            linewidth=0.5 + 4 * abs(e["attribution"]) / biggest,
            alpha=0.6,
        )
    for name, (x, y) in spots.items():
        ax.scatter([x], [y], s=20, color="k", zorder=3)
        ax.annotate(name, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("token position")
    ax.set_ylabel("layer (MLP features at +0.5)")


# ----------------------------------------------------------------------------- greater-than


# ----------------------------------------------------------------------------- input-invariant


def feature_weights(upstream: Any, downstream: Any) -> torch.Tensor:
    """Input-invariant connections W_dec[i] . W_enc[:, j] from every feature i of an earlier
    transcoder to every feature j of a later one ([d_sae_up, d_sae_down])."""
    return upstream.W_dec @ downstream.W_enc


def ov_weights(
    model: HookedTransformer,
    layer: int,
    head: int,
    upstream: Any,
    downstream: Any,
    feature: int | None = None,
) -> torch.Tensor:
    """Input-invariant connections through a head's OV circuit: W_dec[i] W_V W_O W_enc[:, j]
    ([d_sae_up, d_sae_down], or [d_sae_up] for one downstream ``feature``)."""
    attn = model.blocks[layer].attn
    w_enc = downstream.W_enc if feature is None else downstream.W_enc[:, feature]
    return upstream.W_dec @ (attn.W_V[head] @ (attn.W_O[head] @ w_enc))


def invariant_vs_dependent(tables: Sequence[pd.DataFrame]) -> float:
    """Correlation, over every feature row of every table, between the input-invariant weight and
    the input-dependent attribution (activation x weight)."""
    rows = pd.concat([t[t.kind == "feature"] for t in tables]) if tables else pd.DataFrame()
    if len(rows) < 3:
        return float("nan")
    return float(np.corrcoef(rows.weight, rows.attribution)[0, 1])


def with_scaled(target: Target, factor: float) -> Target:
    """The same target multiplied by ``factor``."""
    return replace(target, vector=target.vector * factor, bias=target.bias * factor)


# ----------------------------------------------------------------------------- transcoders for many layers

PRESETS = {
    # every parameter a scale sets; `default` time on 2 CPU cores: see the notebook's runtime line (the target was 8 min)
    "smoke": {
        "tc_layers": [0, 1, 2, 3],
        "ctx": 64,
        "n_train_tokens": 2_048,
        "epochs": 2,
        "n_eval_tokens": 256,
        "d_sae": 128,
        "batch_tokens": 256,
        "l1_grid": [0.03, 0.1],
        "sweep_layers": [1, 3],
        "n_prompts": 8,
        "n_traced": 1,
        "iterations": 2,
        "branches": 3,
        "beam": 3,
        "top_ks": [5, 20],
        "circuit_layers": 2,
        "precision_k": 2,
        "n_blind": 4,
        "n_perm": 20,
    },
    "dry_run": {  # a paper-scale rehearsal (dry_run=True): every branch, the smallest sizes
        "tc_layers": [0, 1],
        "n_train_tokens": 1_024,
        "epochs": 1,
        "n_eval_tokens": 128,
        "d_sae": 64,
        "l1_grid": [0.1],
        "sweep_layers": [1],
        "n_prompts": 4,
        "iterations": 1,
        "branches": 2,
        "beam": 2,
        "top_ks": [5],
        "circuit_layers": 1,
        "precision_k": 1,
        "n_blind": 2,
        "n_perm": 10,
    },
    "default": {
        "model_name": "smollm2-135m",
        "source": "shipped",
        "tc_layers": list(range(30)),
        "ctx": 128,
        "n_train_tokens": 24_576,
        "epochs": 4,
        "n_eval_tokens": 768,
        "d_sae": 768,
        "batch_tokens": 512,
        "l1_grid": [0.02, 0.03, 0.05],
        "sweep_layers": [10, 20],
        "max_l0": 100.0,
        "n_prompts": 40,
        "n_traced": 4,
        "iterations": 3,
        "branches": 4,
        "beam": 6,
        "top_ks": [1, 3, 10, 30, 100, 300],
        "circuit_layers": 6,
        "precision_k": 10,
        "n_blind": 24,
        "n_perm": 200,
    },
    "paper": {  # the paper's set-up: GPT-2 small, a transcoder for each of its 12 MLPs, OpenWebText
        "model_name": "gpt2",
        "source": "openwebtext",
        "tc_layers": list(range(12)),
        "ctx": 128,
        "n_train_tokens": 1_048_576,
        "epochs": 2,
        "n_eval_tokens": 8_192,
        "d_sae": 12_288,
        "batch_tokens": 4_096,
        "l1_grid": [0.003, 0.01, 0.03],
        "sweep_layers": [2, 6, 10],
        "n_prompts": 80,
        "n_traced": 10,
        "iterations": 4,
        "branches": 5,
        "beam": 8,
        "top_ks": [1, 3, 10, 30, 100, 300, 1000, 3000],
        "circuit_layers": 6,
        "precision_k": 20,
        "n_blind": 40,
        "n_perm": 1000,
    },
}
MeanActs = dict[int, torch.Tensor]  # layer -> [pos, units]: a unit's mean over prompts, per position


def prompt_tokens(model: HookedTransformer, prompts: Sequence[str]) -> torch.Tensor:
    """[n, pos] tokens of equal-length prompts, on the model's device."""
    tokens = model.to_tokens(list(prompts), prepend_bos=False)
    return tokens.to(model.cfg.device)


def greater_than_task(model: HookedTransformer) -> GreaterThan:
    """The greater-than task as ``model``'s tokenizer writes years (single digits or two-digit tokens)."""
    return GreaterThan.for_tokenizer(model.tokenizer)


@dataclass(frozen=True)
class CleanRun:
    """One unedited run of equal-length prompts: their tokens, attention sinks and every layer's
    residual input (``resid[n_layers]`` is the last block's output). An edited run starts from here at
    its first edited layer, since nothing below that layer changes."""

    prompts: tuple[str, ...]
    tokens: torch.Tensor  # [n, pos]
    sinks: torch.Tensor  # [n, pos]
    resid: torch.Tensor  # [n_layers + 1, n, pos, d]


@torch.no_grad()
def clean_run(model: HookedTransformer, prompts: Sequence[str]) -> CleanRun:
    """Run equal-length ``prompts`` once and keep what an edited run can start from."""
    tokens = prompt_tokens(model, prompts)
    names = {f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)}
    final, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=model.cfg.n_layers)
    resid = torch.stack([cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(model.cfg.n_layers)] + [final])
    sinks = T.model_sinks(model, tokens, resid[T.sink_layer(model)])
    return CleanRun(tuple(prompts), tokens, sinks, resid)


def first_edited_layer(replacements: Mapping[int, Any], fwd_hooks: Sequence, n_layers: int) -> int:
    """The lowest block that ``replacements`` or ``fwd_hooks`` touch: -1 for a hook outside the blocks
    (the embedding, or a name filter), ``n_layers`` when nothing is edited."""
    layers = list(replacements)
    for name, _ in fwd_hooks:
        parts = name.split(".") if isinstance(name, str) else []
        layers.append(int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else -1)
    return min(layers, default=n_layers)


def run_start(
    model: HookedTransformer, prompts: Sequence[str], clean: CleanRun | None, layer: int
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, torch.Tensor] | None]:
    """Tokens, attention sinks and where a run of ``prompts`` edited from block ``layer`` on starts:
    (layer, its clean residual input) from ``clean``, or None (embed the tokens) without ``clean`` or
    for an edit outside the blocks (``layer`` -1)."""
    if clean is None:
        tokens = prompt_tokens(model, prompts)
        return tokens, T.model_sinks(model, tokens), None
    if clean.prompts != tuple(prompts):
        raise ValueError("clean was made for other prompts; pass clean_run(model, these prompts)")
    return clean.tokens, clean.sinks, ((layer, clean.resid[layer]) if layer >= 0 else None)


@torch.no_grad()
def answer_probs(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: Sequence[str],
    replacements: Mapping[int, T.Replacement] | None = None,
    fwd_hooks: Sequence = (),
    clean: CleanRun | None = None,
) -> torch.Tensor:
    """Probabilities [n, answers] of the task's answers as the next token after each (equal-length)
    prompt, with MLP writes replaced by ``replacements`` (not at sinks) and extra ``fwd_hooks``. With
    ``clean`` (``clean_run`` of the same prompts) the run starts at the first edited layer."""
    replacements = replacements or {}
    tokens, sinks, start = run_start(model, prompts, clean, first_edited_layer(replacements, fwd_hooks, model.cfg.n_layers))
    hooks = T.replace_mlps(replacements, sinks) + list(fwd_hooks)
    last = torch.full((len(tokens),), tokens.shape[1] - 1)
    probs = logits_at(model, tokens, last, hooks, start).softmax(-1)
    return probs[:, list(task.answer_ids)].cpu()


def mean_prob_diff(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    replacements: Mapping[int, T.Replacement] | None = None,
    fwd_hooks: Sequence = (),
    clean: CleanRun | None = None,
) -> float:
    """The task's probability difference averaged over ``prompts``, with ``answer_probs``' replacements."""
    probs = answer_probs(model, task, prompts.prompt, replacements, fwd_hooks, clean)
    return float(task.probability_difference(probs, prompts).mean())


def mean_write_fn(mean: torch.Tensor) -> T.Replacement:
    """A replacement of an MLP write by its mean over prompts ([pos, d], per position)."""
    return lambda x, real: mean.to(real).expand_as(real)


@torch.no_grad()
def mean_writes(model: HookedTransformer, prompts: Sequence[str], layers: Iterable[int]) -> MeanActs:
    """Each MLP's write averaged over the prompts, per position ([pos, d_model])."""
    names = {mlp_hooks(layer)[1]: layer for layer in layers}
    _, cache = model.run_with_cache(prompt_tokens(model, prompts), names_filter=lambda n: n in names,
                                    stop_at_layer=max(names.values(), default=0) + 1)
    return {layer: cache[name].mean(0) for name, layer in names.items()}


def layer_effects(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    layers: Sequence[int],
    clean: CleanRun | None = None,
) -> pd.Series:
    """Per layer: clean mean probability difference minus the one with that MLP mean-ablated
    (replaced by its mean over prompts; sinks keep the real write). Large = the layer carries the task.
    ``clean``: the prompts' ``clean_run``, if one is at hand."""
    means = mean_writes(model, prompts.prompt, layers)
    run = clean if clean is not None else clean_run(model, prompts.prompt)
    unedited = mean_prob_diff(model, task, prompts, clean=run)
    effects = {
        layer: unedited - mean_prob_diff(model, task, prompts, {layer: mean_write_fn(means[layer])}, clean=run)
        for layer in tqdm(layers, desc="mean-ablating each MLP")
    }
    return pd.Series(effects, name="effect")


@torch.no_grad()
def mean_feature_acts(model: HookedTransformer, prompts: Sequence[str], transcoders: Mapping[int, Any]) -> MeanActs:
    """Each transcoder feature's activation averaged over prompts, per position ([pos, d_sae])."""
    names = {mlp_hooks(layer)[0]: layer for layer in transcoders}
    _, cache = model.run_with_cache(prompt_tokens(model, prompts), names_filter=lambda n: n in names,
                                    stop_at_layer=max(names.values(), default=0) + 1)
    return {layer: transcoders[layer].encode(cache[name]).mean(0) for name, layer in names.items()}


@torch.no_grad()
def mean_neuron_acts(model: HookedTransformer, prompts: Sequence[str], layers: Iterable[int]) -> MeanActs:
    """Each MLP neuron's (post-activation) value averaged over prompts, per position ([pos, d_mlp])."""
    names = {f"blocks.{layer}.mlp.hook_post": layer for layer in layers}
    _, cache = model.run_with_cache(prompt_tokens(model, prompts), names_filter=lambda n: n in names,
                                    stop_at_layer=max(names.values(), default=0) + 1)
    return {layer: cache[name].mean(0) for name, layer in names.items()}


def _keep_mask(n_units: int, ids: torch.Tensor | None) -> torch.Tensor:
    mask = torch.zeros(n_units, dtype=torch.bool)
    if ids is not None:
        mask[ids] = True
    return mask


def features_kept(
    transcoders: Mapping[int, Any], means: MeanActs, keep: Mapping[int, torch.Tensor]
) -> dict[int, T.Replacement]:
    """Replacements splicing each transcoder with only ``keep[layer]`` features at their real
    activation and every other feature at its mean over prompts (mean-ablation)."""
    out = {}
    for layer, tc in transcoders.items():
        mask = _keep_mask(tc.W_enc.shape[1], keep.get(layer))

        def predict(x, real, tc=tc, mask=mask, mean=means[layer]):
            acts = tc.encode(x)
            return tc.decode(torch.where(mask.to(acts.device), acts, mean.to(acts).expand_as(acts)))

        out[layer] = predict
    return out


def neurons_kept(means: MeanActs, keep: Mapping[int, torch.Tensor]) -> list:
    """Hooks keeping only ``keep[layer]`` MLP neurons (post-activation) of each layer in ``means``
    at their real value and every other neuron at its mean over prompts (mean-ablation)."""
    hooks = []
    for layer, mean in means.items():
        mask = _keep_mask(mean.shape[-1], keep.get(layer))

        def patch(act, hook, mask=mask, mean=mean):
            return torch.where(mask.to(act.device), act, mean.to(act).expand_as(act))

        hooks.append((f"blocks.{layer}.mlp.hook_post", patch))
    return hooks


def unit_scores(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    means: MeanActs,
    transcoders: Mapping[int, Any] | None = None,
    clean: CleanRun | None = None,
) -> dict[int, torch.Tensor]:
    """Per unit: mean over prompts of |sum over positions of (a - mean a) x gradient of the
    probability difference|, the first-order effect of mean-ablating it. Units are transcoder
    features (transcoders spliced, sinks real) or, without transcoders, the MLP neurons of the
    layers in ``means``. With ``clean`` the run starts at the first of those layers."""
    tokens, sinks, start = run_start(model, prompts.prompt, clean, min(means))
    store: dict[int, torch.Tensor] = {}

    def keep_grad(act: torch.Tensor, layer: int) -> torch.Tensor:
        act.retain_grad()
        store[layer] = act
        return act

    if transcoders is not None:
        fns = {
            layer: (lambda x, real, tc=tc, layer=layer: tc.decode(keep_grad(tc.encode(x), layer)))
            for layer, tc in transcoders.items()
        }
        hooks = T.replace_mlps(fns, sinks)
    else:
        hooks = [
            (f"blocks.{layer}.mlp.hook_post", lambda act, hook, layer=layer: keep_grad(act, layer))
            for layer in means
        ]
    with torch.enable_grad():
        last = torch.full((len(tokens),), tokens.shape[1] - 1)
        probs = logits_at(model, tokens, last, hooks, start).softmax(-1)[:, list(task.answer_ids)]
        task.probability_difference(probs.cpu(), prompts).mean().backward()
    return {
        layer: ((a - means[layer].to(a)) * a.grad).sum(1).abs().mean(0).detach().cpu()
        for layer, a in store.items()
    }


def best_layer_window(scores: Mapping[int, torch.Tensor], width: int) -> list[int]:
    """The ``width`` consecutive layers (among those scored) whose units carry the most total |score|."""
    layers = sorted(scores)
    if not 1 <= width <= len(layers):
        raise ValueError(f"window width must be between 1 and {len(layers)} (the layers scored), got {width}")
    totals = {layer: float(scores[layer].abs().sum()) for layer in layers}
    windows = [layers[i : i + width] for i in range(len(layers) - width + 1)]
    contiguous = [w for w in windows if w[-1] - w[0] == width - 1]
    if not contiguous:
        raise ValueError(f"no {width} consecutive layers among the scored layers {layers}")
    return max(contiguous, key=lambda w: sum(totals[layer] for layer in w))


def top_units(scores: Mapping[int, torch.Tensor], k: int) -> dict[int, torch.Tensor]:
    """The ``k`` units with the largest |score| across all layers, as layer -> unit ids."""
    flat = torch.cat([s.abs() for s in scores.values()])
    layers = torch.cat([torch.full_like(s, layer, dtype=torch.long) for layer, s in scores.items()])
    units = torch.cat([torch.arange(len(s)) for s in scores.values()])
    top = torch.topk(flat, min(k, len(flat))).indices
    return {layer: units[top][layers[top] == layer] for layer in scores}


# ----------------------------------------------------------------------------- checks that can fail


def error_share(table: pd.DataFrame) -> float:
    """Share of a contributions table's transcoder terms carried by error nodes:
    sum |tc_error| / (sum |tc_error| + sum |feature|)."""
    err = float(table[table.kind == "tc_error"].attribution.abs().sum())
    feat = float(table[table.kind == "feature"].attribution.abs().sum())
    return err / (err + feat) if err + feat > 0 else float("nan")


def permuted_correlation_null(tables: Sequence[pd.DataFrame], n_perm: int = 200, seed: int = 0) -> np.ndarray:
    """Null distribution of the weight-attribution correlation when activations are shuffled across
    feature rows (attribution = activation x weight keeps its structure, the pairing is broken)."""
    rows = pd.concat([t[t.kind == "feature"] for t in tables]) if tables else pd.DataFrame()
    if len(rows) < 3:
        return np.array([])
    weight = rows.weight.to_numpy(float)
    act = rows.attribution.to_numpy(float) / np.where(weight == 0, np.nan, weight)
    keep = np.isfinite(act)
    weight, act = weight[keep], act[keep]
    rng = np.random.default_rng(seed)
    return np.array([np.corrcoef(weight, rng.permutation(act) * weight)[0, 1] for _ in range(n_perm)])


def all_feature_weights(tr: Trace, target: Target, transcoders: Mapping[int, Any], n_layers: int) -> pd.DataFrame:
    """The input-invariant weight W_dec[i] . v / scale of every feature of every upstream transcoder
    (active or not) for ``target``: columns layer, unit, weight."""
    v = target.vector / tr.scale[scale_key(target)][target.pos]
    _, mlp_layers = upstream_layers(target, n_layers)
    parts = [
        pd.DataFrame({"layer": layer, "unit": np.arange(transcoders[layer].W_dec.shape[0]),
                      "weight": (transcoders[layer].W_dec @ v).cpu().numpy()})
        for layer in mlp_layers if layer in transcoders
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["layer", "unit", "weight"])


def topk_overlap(table: pd.DataFrame, weights: pd.DataFrame, k: int, k_weights: int) -> tuple[float, float]:
    """Share of the ``k`` upstream features with the largest |attribution| that are among the
    ``k_weights`` largest |weight| of all upstream features, and the share expected by chance
    (k_weights / number of features)."""
    feats = table[table.kind == "feature"]
    if feats.empty or weights.empty:
        return float("nan"), float("nan")
    top = feats.reindex(feats.attribution.abs().sort_values(ascending=False).index).head(k)
    by_weight = weights.reindex(weights.weight.abs().sort_values(ascending=False).index).head(k_weights)
    pool = set(zip(by_weight.layer.astype(int), by_weight.unit.astype(int), strict=True))
    hits = [(int(r.layer), int(r.unit)) in pool for r in top.itertuples()]
    return float(np.mean(hits)), min(1.0, k_weights / len(weights))


def precision_at_k(
    model: HookedTransformer,
    task: GreaterThan,
    prompts: pd.DataFrame,
    units: Mapping[int, torch.Tensor],
    ablate_one,
    min_effect: float,
    baseline: tuple[Mapping[int, T.Replacement], Sequence] = ({}, ()),
) -> float:
    """Share of ``units`` (layer -> ids) whose mean-ablation alone moves the mean probability
    difference by at least ``min_effect`` from the ``baseline`` model ((replacements, hooks): the
    spliced model for transcoder features, the real one for neurons); ``ablate_one(layer, unit)``
    gives the (replacements, hooks) of the baseline with that one unit mean-ablated."""
    run = clean_run(model, prompts.prompt)
    before = mean_prob_diff(model, task, prompts, *baseline, clean=run)
    flags = []
    for layer, ids in units.items():
        for unit in ids.tolist():
            value = mean_prob_diff(model, task, prompts, *ablate_one(layer, unit), clean=run)
            flags.append(abs(before - value) >= min_effect)
    return float(np.mean(flags)) if flags else float("nan")


def feature_ablator(transcoders: Mapping[int, Any], means: MeanActs):
    """For ``precision_at_k``: (layer, feature) -> replacements splicing ``transcoders`` with only
    that feature mean-ablated."""

    def ablate(layer: int, unit: int):
        keep = {}
        for other, tc in transcoders.items():
            ids = torch.arange(tc.W_enc.shape[1])
            keep[other] = ids[ids != unit] if other == layer else ids
        return features_kept(transcoders, means, keep), ()

    return ablate


def neuron_ablator(means: MeanActs):
    """For ``precision_at_k``: (layer, neuron) -> hooks mean-ablating only that MLP neuron."""

    def ablate(layer: int, unit: int):
        ids = torch.arange(means[layer].shape[-1])
        return {}, neurons_kept({layer: means[layer]}, {layer: ids[ids != unit]})

    return ablate


def random_units(scores: Mapping[int, torch.Tensor], k: int, seed: int = 0) -> dict[int, torch.Tensor]:
    """``k`` units drawn uniformly from all scored units (the chance baseline for ``top_units``)."""
    sizes = {layer: len(s) for layer, s in scores.items()}
    flat = torch.randperm(sum(sizes.values()), generator=torch.Generator().manual_seed(seed))[:k]
    out, start = {}, 0
    for layer, n in sizes.items():
        out[layer] = flat[(flat >= start) & (flat < start + n)] - start
        start += n
    return out


# ----------------------------------------------------------------------------- blind case study


@dataclass(frozen=True)
class Hypothesis:
    """What a feature should fire on, guessed from weights alone: tokens at its own position, and
    tokens earlier in the context that attention heads move to it. Tokens are stripped and lower-cased."""

    current: frozenset[str]
    context: frozenset[str]

    def describe(self) -> str:
        """One line for a table or a rating card."""
        here = ", ".join(sorted(self.current)) or "-"
        return f"on: {here}" + (f" | after: {', '.join(sorted(self.context))}" if self.context else "")


def token_word(model: HookedTransformer, token: int | torch.Tensor) -> str:
    """A token as a word a hypothesis can name: decoded, stripped of spaces, lower-cased."""
    return model.to_string(int(token)).strip().lower()


@torch.no_grad()
def layer0_hypotheses(
    model: HookedTransformer,
    transcoders: Mapping[int, Any],
    layer: int,
    features: Sequence[int],
    k_features: int = 3,
    k_tokens: int = 4,
) -> list[Hypothesis]:
    """The paper's blind case-study method, from weights only, for ``features`` of ``layer``: the
    layer-0 transcoder features that connect most strongly to a feature straight through the residual
    stream (W_dec0[i] . W_enc[:, f]) name tokens at its own position, with the feature's own
    de-embedding; those that connect most strongly through some attention head's OV circuit in layers
    1..``layer`` (W_dec0[i] W_V W_O W_enc[:, f]) name tokens earlier in the context. Each layer-0
    feature is read through its ``k_tokens`` top de-embedding tokens (``T.de_embedding``'s scores);
    norms' scales are taken as constant. Tokens are read as ``token_word``s."""
    if layer < 1 or 0 not in transcoders:
        raise ValueError("a layer-0 hypothesis needs a layer-0 transcoder and a feature in layer >= 1")
    up, w_enc = transcoders[0], transcoders[layer].W_enc[:, list(features)].to(transcoders[0].W_dec)
    n, k = len(features), k_features
    direct = up.W_dec @ w_enc
    through_heads = torch.stack([
        up.W_dec @ (block.attn.W_V @ (block.attn.W_O @ w_enc.to(block.attn.W_O))).to(up.W_dec)
        for block in model.blocks[1 : layer + 1]
    ]).amax(dim=(0, 1))  # [d_sae0, n]: each layer-0 feature's strongest connection through any head
    near, far = (weights.topk(k, dim=0).indices.T.flatten() for weights in (direct, through_heads))  # [n * k] each
    emb = T.rms_embeddings(model)
    columns = torch.cat([w_enc, up.W_enc[:, near], up.W_enc[:, far]], dim=1)  # everything read, in one product
    top = (emb @ columns.to(emb)).topk(k_tokens, dim=0).indices.T.tolist()
    words = [{token_word(model, t) for t in row} for row in top]
    own, here, before = words[:n], words[n : n + n * k], words[n + n * k :]
    return [Hypothesis(frozenset(set().union(own[i], *here[i * k : (i + 1) * k])),
                       frozenset(set().union(*before[i * k : (i + 1) * k])))
            for i in range(n)]


def hypothesis_hits(model: HookedTransformer, tokens: torch.Tensor, acts: torch.Tensor, hypothesis: Hypothesis,
                    k_contexts: int, window: int = 8) -> float:
    """Share of the ``k_contexts`` tokens where a feature fires most (``acts`` [n_tokens], in
    ``tokens``' flattened order) that the hypothesis predicts: the token itself is one of its
    ``current`` tokens, or one of the ``window`` tokens before it is one of its ``context`` tokens."""
    n_live = int((acts > 0).sum())
    if n_live == 0:
        return float("nan")
    words = lambda ids: {token_word(model, t) for t in ids}  # noqa: E731
    hits = []
    for flat in torch.topk(acts, min(k_contexts, n_live)).indices.tolist():
        b, p = divmod(flat, tokens.shape[1])
        hits.append(bool(words(tokens[b, p : p + 1]) & hypothesis.current)
                    or bool(words(tokens[b, max(p - window, 0) : p]) & hypothesis.context))
    return float(np.mean(hits))


def blind_scores(
    model: HookedTransformer,
    transcoders: Mapping[int, Any],
    acts: Mapping[int, torch.Tensor],
    tokens: torch.Tensor,
    cases: Sequence[tuple[int, int]],
    k_contexts: int,
) -> pd.DataFrame:
    """Per (layer, feature) of ``cases``: the hit rate of its own ``layer0_hypotheses`` on its top
    contexts, and the null: the hit rate of the next case's hypothesis (cases in a ring, so never its
    own) on the same contexts. ``acts[layer]`` [n_tokens, d_sae] are that layer's feature activations
    on ``tokens``."""
    if len(cases) < 2:
        raise ValueError(f"a blind study needs at least 2 features (the null is another feature's hypothesis), got {len(cases)}")
    hyps = {}
    for layer in dict.fromkeys(layer for layer, _ in cases):
        features = [f for lay, f in cases if lay == layer]
        hyps |= {(layer, f): h for f, h in zip(features, layer0_hypotheses(model, transcoders, layer, features), strict=True)}
    rows = []
    for i, (layer, f) in enumerate(cases):
        own, other = hyps[(layer, f)], hyps[cases[(i + 1) % len(cases)]]
        rows.append({"layer": layer, "feature": f,
                     "own": hypothesis_hits(model, tokens, acts[layer][:, f], own, k_contexts),
                     "null": hypothesis_hits(model, tokens, acts[layer][:, f], other, k_contexts),
                     "hypothesis": own.describe()[:160],
                     "contexts": T.top_contexts(model, tokens, acts[layer][:, f], k_contexts)})
    return pd.DataFrame(rows)


def rating_sheet(cases: pd.DataFrame, model: HookedTransformer, transcoders: Mapping[int, Any], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature cards for a class and their hidden key. ``cases`` has columns layer, feature, hypothesis
    (``Hypothesis.describe``) and contexts (a top_contexts table). Each card shows the circuit evidence
    (the weight-only hypothesis and the logit-effect tokens) and the top contexts, with blank columns
    for the student's own hypothesis and a 1-5 rating of how well the contexts match it; the key maps
    cards back to (layer, feature)."""
    order = np.random.default_rng(seed).permutation(len(cases))
    cards, key = [], []
    for card, i in enumerate(order):
        row = cases.iloc[int(i)]
        effect = T.logit_effect(model, transcoders[int(row.layer)], int(row.feature), 8).token
        cards.append({"card": card, "evidence_from_weights": row.hypothesis, "outputs_it_promotes": " | ".join(effect),
                      "hypothesis (write first)": "", "top_contexts (read after)": "\n".join(row.contexts.context),
                      "rating 1-5": ""})
        key.append({"card": card, "layer": int(row.layer), "feature": int(row.feature)})
    return pd.DataFrame(cards), pd.DataFrame(key)


def save_rating_sheet(cards: pd.DataFrame, key: pd.DataFrame, results_dir: str, scale: str) -> Path:
    """Write ``rating_sheet.csv`` (cards) and ``rating_key.csv`` (keep it hidden) to the run's results folder."""
    from utils.outputs import results_folder

    folder = results_folder(results_dir, scale)
    folder.mkdir(parents=True, exist_ok=True)
    cards.to_csv(folder / "rating_sheet.csv", index=False)
    key.to_csv(folder / "rating_key.csv", index=False)
    return folder / "rating_sheet.csv"
