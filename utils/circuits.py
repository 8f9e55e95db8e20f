"""Notebook 03's computations: circuit analysis through transcoders (Dunefsky, Chlenski & Nanda 2024).

With transcoders in place of the MLPs, the residual stream at any point is a sum of terms that are
each linear in something simple: the token embedding, transcoder features (activation x decoder
row), attention heads (pattern x OV-mapped source vector), and explicit error and bias terms. Reading
a target direction ``v`` (a later feature's encoder column, or a logit direction) off that sum, with
each norm's scale held at its value on the prompt (as the paper does), every term's contribution is
exact and they add up to the target's pre-activation.

* ``trace``: one forward pass recording what the attribution needs (and each transcoder's features).
* ``Target`` / ``contributions``: every upstream term's contribution to a target, errors included.
* ``expand`` / ``path_search``: targets for a feature's or head's own inputs, so attributions chain
  along paths; a beam search back from a target; ``plot_graph``.
* ``greater_than_prompts`` / ``prob_diff``: the greater-than task for digit-split years.
* ``feature_weights`` / ``ov_weights``: input-invariant feature-to-feature connections.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import transcoders as T
from utils.greater_than import (  # noqa: F401  (the greater-than task lives there; names kept for callers)
    DIGITS,
    GT_TEMPLATE,
    digit_tokens,
    greater_than_prompts,
    later_earlier,
    prob_diff,
)
from utils.hooks import splice, zero_ablate
from utils.sublayers import Sublayer
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
    acts: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [pos, d_sae]
    tc_out: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [pos, d]


@torch.no_grad()
def trace(model: HookedTransformer, tokens: torch.Tensor, transcoders: Mapping[int, Any]) -> Trace:
    """Run ``tokens`` ([pos] or [1, pos]) once and record embeddings, residual streams, norm scales,
    attention patterns and values, sublayer writes, and each transcoder's features and output."""
    tokens = tokens.reshape(-1)
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
    )
    for layer, tc in transcoders.items():
        acts = tc.encode(cache[mlp_hooks(layer)[0]][0])
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


def _resid_key(target: Target) -> str:
    return {"mlp": f"mid{target.layer}", "attn": f"pre{target.layer}", "final": "final"}[
        target.site
    ]


def _scale_key(target: Target) -> str:
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
    return float(resid @ target.vector / tr.scale[_scale_key(target)][target.pos]) + target.bias


@torch.no_grad()
def contributions(
    model: HookedTransformer, tr: Trace, target: Target, transcoders: Mapping[int, Any]
) -> pd.DataFrame:
    """Every upstream term's contribution to ``target`` (a row each), so that their sum plus
    ``target.bias`` equals ``target_value``.

    Columns: kind (embed / feature / tc_error / tc_bias / mlp (a layer without transcoder) / head /
    attn_bias), layer, pos (where the term is written), unit (token, feature or head), src (a head's
    source position, else -1), attribution. A feature's attribution is activation x (W_dec[i] . v)
    and ``weight`` holds the input-invariant part W_dec[i] . v.
    """
    v = target.vector / tr.scale[_scale_key(target)][target.pos]
    p = target.pos
    rows = [_row("embed", -1, p, int(tr.tokens[p]), float(tr.embed[p] @ v))]
    attn_layers, mlp_layers = upstream_layers(target, model.cfg.n_layers)
    for layer in mlp_layers:
        if layer not in transcoders:
            rows.append(_row("mlp", layer, p, -1, float(tr.mlp_out[layer, p] @ v)))
            continue
        tc = transcoders[layer]
        weights = tc.W_dec @ v
        active = torch.nonzero(tr.acts[layer][p] > 0).flatten()
        for i in active.tolist():
            rows.append(
                {
                    **_row("feature", layer, p, i, float(tr.acts[layer][p, i] * weights[i])),
                    "weight": float(weights[i]),
                }
            )
        rows.append(_row("tc_bias", layer, p, -1, float(tc.b_dec @ v)))
        rows.append(
            _row("tc_error", layer, p, -1, float((tr.mlp_out[layer, p] - tr.tc_out[layer][p]) @ v))
        )
    for layer in attn_layers:
        attn = model.blocks[layer].attn
        ov = torch.einsum("hed,d->he", attn.W_O, v)  # [head, d_head]: W_O[h] v
        per_source = tr.pattern[layer, :, p, : p + 1] * torch.einsum(
            "she,he->hs", tr.values[layer, : p + 1], ov
        )
        for h, s in torch.nonzero(per_source.abs() > 0).tolist():
            rows.append(_row("head", layer, p, h, float(per_source[h, s]), src=s))
        rows.append(_row("attn_bias", layer, p, -1, float(attn.b_O @ v)))
    return pd.DataFrame(rows)


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
    v = parent.vector / tr.scale[_scale_key(parent)][parent.pos]
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
    form the next frontier. Attributions are in root units."""
    graph = Graph()
    graph.nodes[root_name] = {
        "kind": "target",
        "layer": root.layer + (1.5 if root.site == "final" else 0),
        "pos": root.pos,
        "attribution": target_value(tr, root),
    }
    frontier: list[tuple[str, Target]] = [(root_name, root)]
    for _ in range(iterations):
        children: list[tuple[float, str, Target]] = []
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
                        children.append((abs(row["attribution"]), child, nxt))
        children.sort(key=lambda c: -c[0])
        frontier = [(name, t) for _, name, t in children[:beam]]
        if not frontier:
            break
    return graph


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
    # every size notebook 03 uses; `default` is sized for <= 20 min on 2 CPU cores (training included)
    "smoke": {
        "tc_layers": [0, 1, 2, 3],
        "ctx": 64,
        "n_train_tokens": 2_048,
        "n_eval_tokens": 256,
        "d_sae": 128,
        "batch_tokens": 256,
        "l1": 4e-3,
        "n_prompts": 8,
        "n_traced": 1,
        "iterations": 2,
        "branches": 3,
        "beam": 3,
        "top_ks": [5, 20],
        "circuit_layers": 2,
    },
    "default": {
        "tc_layers": list(range(30)),
        "ctx": 128,
        "n_train_tokens": 49_152,  # about 10 s per 1K tokens for all 30 layers on 2 cores
        "n_eval_tokens": 1_024,
        "d_sae": 2_304,
        "batch_tokens": 64,  # 768 optimiser steps from one pass
        "l1": 2.5e-3,  # 6e-3 left L0 about 4 and FVU about 0.95 at this token budget
        "n_prompts": 80,
        "n_traced": 4,
        "iterations": 3,
        "branches": 4,
        "beam": 6,
        "top_ks": [10, 30, 100, 300, 1000],
        "circuit_layers": 6,
    },
    "paper": {
        "tc_layers": list(range(30)),
        "ctx": 128,
        "n_train_tokens": 1_048_576,
        "n_eval_tokens": 8_192,
        "d_sae": 9_216,
        "batch_tokens": 2_048,
        "l1": 6e-3,
        "n_prompts": 80,
        "n_traced": 10,
        "iterations": 4,
        "branches": 5,
        "beam": 8,
        "top_ks": [10, 30, 100, 300, 1000, 3000],
        "circuit_layers": 12,
    },
}
MANIFEST = "manifest.json"


def train_all_layers(
    model: HookedTransformer,
    layers: Sequence[int],
    token_batches: Iterable[torch.Tensor],
    folder: str | os.PathLike,
    settings: Mapping[str, Any],
    batch_tokens: int,
    total_steps: int | None = None,
) -> dict[int, Any]:
    """One transcoder per layer, trained from ONE streaming pass that feeds every layer at once, and
    saved under ``folder/L<layer>`` (sae-lens format). A folder whose manifest records the same
    ``settings`` and layers is loaded instead of retrained. ``settings`` holds TrainConfig fields
    (d_sae, l1, lr, seed, ...) and anything else that identifies the run (tokens, ctx)."""
    folder = Path(folder)
    manifest = {"layers": list(layers), "trainer_version": T.TRAINER_VERSION, **settings}
    path = folder / MANIFEST
    if path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(manifest)):
        return {layer: T.load_transcoder(folder / f"L{layer}") for layer in layers}
    fields = {f for f in T.TrainConfig.__dataclass_fields__}
    cfg = {k: v for k, v in settings.items() if k in fields}
    configs = {
        layer: (layer, T.TrainConfig(**cfg, checkpoint_dir=str(folder / f"ckpt{layer}")))
        for layer in layers
    }
    chunks = (pairs for _, pairs in T.stream_activations(model, layers, token_batches))
    batches = T.shuffled(chunks, batch_tokens, 8 * batch_tokens, seed=int(settings.get("seed", 0)))
    trainers = T.train_transcoders(
        batches,
        configs,
        model.cfg.d_model,
        model.cfg.model_name,
        total_steps,
        "training all layers",
    )
    out = {}
    for layer, trainer in trainers.items():
        T.save_transcoder(trainer.transcoder, layer, folder / f"L{layer}", model.cfg.model_name)
        shutil.rmtree(folder / f"ckpt{layer}", ignore_errors=True)
        out[layer] = T.load_transcoder(folder / f"L{layer}")
    path.write_text(json.dumps(manifest))
    return out


def fingerprint(windows: Sequence[torch.Tensor]) -> str:
    """A short hash of token windows, so cached transcoders are re-used only for the same data."""
    digest = hashlib.sha256()
    for w in windows:
        digest.update(w.to(torch.int32).numpy().tobytes())
    return digest.hexdigest()[:16]


def splice_all(
    transcoders: Mapping[int, Any], keep: Mapping[int, torch.Tensor] | None = None
) -> list:
    """Hooks replacing every MLP that has a transcoder by its prediction; with ``keep`` (layer ->
    feature ids), only those features stay active and the rest are zeroed (output bias kept)."""
    hooks = []
    for layer, tc in transcoders.items():
        mask = None
        if keep is not None:
            mask = torch.zeros(tc.W_enc.shape[1], dtype=torch.bool)
            mask[keep.get(layer, torch.empty(0, dtype=torch.long))] = True

        def predict(x, tc=tc, mask=mask):
            acts = tc.encode(x)
            return tc.decode(acts if mask is None else acts * mask.to(acts.device))

        hooks += splice(Sublayer(layer, "mlp"), predict)
    return hooks


def keep_neurons(layers: Iterable[int], keep: Mapping[int, torch.Tensor]) -> list:
    """Hooks zeroing every MLP neuron (post-activation) of ``layers`` except ``keep[layer]``
    (layer -> neuron ids); other layers' MLPs are untouched."""
    hooks = []
    for layer in layers:
        ids = keep.get(layer, torch.empty(0, dtype=torch.long))

        def mask(act, hook, ids=ids):
            out = torch.zeros_like(act)
            out[..., ids] = act[..., ids]
            return out

        hooks.append((f"blocks.{layer}.mlp.hook_post", mask))
    return hooks


@torch.no_grad()
def layer_quality(
    model: HookedTransformer, transcoders: Mapping[int, Any], tokens: torch.Tensor
) -> tuple[pd.DataFrame, dict]:
    """Per layer: L0, FVU and CE loss with that one MLP spliced; plus the clean CE, the CE with every
    transcoder spliced at once, and with all those MLPs zero-ablated."""
    names = {
        n for layer in transcoders for n in (*mlp_hooks(layer), f"blocks.{layer}.hook_resid_pre")
    }
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    rows = []
    d = model.cfg.d_model
    for layer, tc in tqdm(transcoders.items(), desc="per-layer quality"):
        x, y = (cache[n].reshape(-1, d) for n in mlp_hooks(layer))
        acts = tc.encode(x)
        ev = T.EvalSet(layer, tokens, cache[f"blocks.{layer}.hook_resid_pre"], x, y)
        rows.append(
            {
                "layer": layer,
                "l0": float((acts > 0).sum(-1).float().mean()),
                "fvu": float((y - tc.decode(acts)).pow(2).sum() / (y - y.mean(0)).pow(2).sum()),
                "ce_spliced": T.ce_loss(model, ev, T.replacement_hooks(tc, layer, "transcoder")),
            }
        )
    full = T.eval_set(model, 0, [tokens])
    totals = {
        "clean": T.ce_loss(model, full),
        "all_spliced": T.ce_loss(model, full, splice_all(transcoders)),
        "all_zero_ablated": T.ce_loss(
            model, full, zero_ablate([Sublayer(layer, "mlp") for layer in transcoders])
        ),
    }
    return pd.DataFrame(rows), totals


@torch.no_grad()
def digit_probs(
    model: HookedTransformer, prompts: Sequence[str], fwd_hooks: list = ()
) -> torch.Tensor:
    """Probabilities [n, 10] of the digits '0'..'9' as the next token after each (equal-length) prompt."""
    tokens = model.to_tokens(list(prompts), prepend_bos=False)
    probs = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))[:, -1].softmax(-1)
    return probs[:, digit_tokens(model)]


def grad_attributions(
    model: HookedTransformer,
    prompts: pd.DataFrame,
    transcoders: Mapping[int, Any] | None = None,
    layers: Iterable[int] | None = None,
) -> dict[int, torch.Tensor]:
    """Mean (over prompts, at the last position) activation x gradient of the probability
    difference, per layer: for transcoder features (transcoders spliced) or, without transcoders,
    for the MLP neurons of ``layers`` (default: every layer). A first-order estimate of each unit's effect, used to rank units for top-k."""
    tokens = model.to_tokens(list(prompts.prompt), prepend_bos=False)
    tens = torch.tensor(prompts.tens.to_numpy())
    store: dict[int, torch.Tensor] = {}
    hooks = []
    if transcoders is not None:
        for layer, tc in transcoders.items():

            def predict(x, tc=tc, layer=layer):
                acts = tc.encode(x)
                acts.retain_grad()
                store[layer] = acts
                return tc.decode(acts)

            hooks += splice(Sublayer(layer, "mlp"), predict)
    else:
        for layer in range(model.cfg.n_layers) if layers is None else layers:

            def keep(act, hook, layer=layer):
                act.retain_grad()
                store[layer] = act
                return act

            hooks.append((f"blocks.{layer}.mlp.hook_post", keep))
    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        probs = logits[:, -1].softmax(-1)[:, digit_tokens(model)]
        prob_diff(probs, tens).mean().backward()
    return {layer: (a * a.grad)[:, -1].mean(0).detach() for layer, a in store.items()}


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
