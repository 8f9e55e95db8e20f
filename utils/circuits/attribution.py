"""Input-dependent attribution through transcoders and attention: an exact decomposition.

Dunefsky, Chlenski & Nanda 2024, "circuit analysis with transcoders". With transcoders
in place of the MLPs, the residual stream at any point is a sum of terms that are each linear in
something simple: the token embedding, transcoder features (activation x decoder row), attention
heads (pattern x OV-mapped source vector), and explicit error and bias terms. Reading a target
direction ``v`` (a later feature's encoder column, or a logit direction) off that sum, with each
norm's scale held at its value on the prompt (as the paper does), every term's contribution is
exact and they add up to the target's pre-activation.

The paper's steps, in the order they are used:

1. ``trace``: one forward pass recording what the attribution needs (and each transcoder's
   features; attention-sink positions keep the real MLP, as in the spliced model).
2. ``Target`` and its makers ``feature_target`` (a feature's pre-activation; ``encoder_bias`` folds a
   pre-bias) and ``logit_target`` (a logit difference); ``target_value`` reads it off the trace.
3. ``contributions``: every upstream term's contribution to a target, errors included. Its two
   kinds of term are ``feature_attributions`` (activation x (W_dec[i] . v)) and ``head_terms``
   (pattern x (values W_O . v), the pattern frozen); ``feature_fn`` and ``head_fn`` replace them
   (a learner's own, notebook 03's Exercises 3.2 and 3.3).
4. ``expand``: the target for a feature's or a head's own inputs, so that attributions chain along
   paths (the path search in ``utils.circuits.paths`` is built on it).
5. ``error_share``: how much of the transcoder terms the error nodes carry (a check that can fail).

Public names: ``Trace``, ``trace``, ``Target``, ``Site``, ``EXPANDABLE``, ``feature_target``,
``logit_target``, ``encoder_bias``, ``target_value``, ``scale_key``, ``upstream_layers``,
``contributions``, ``feature_attributions``, ``head_terms``, ``through_norm_after_attention``,
``weighted_after_attention``, ``expand``, ``error_share``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils import hooks
from utils import transcoders as T
from utils.sublayers import Sublayer

__all__ = [
    "EXPANDABLE",
    "Site",
    "Target",
    "Trace",
    "contributions",
    "encoder_bias",
    "error_share",
    "expand",
    "feature_attributions",
    "feature_target",
    "head_terms",
    "logit_target",
    "scale_key",
    "target_value",
    "through_norm_after_attention",
    "trace",
    "upstream_layers",
    "weighted_after_attention",
]

Site = Literal["attn", "mlp", "final"]  # where a target reads the residual stream
EXPANDABLE = ("feature", "head")  # node kinds whose own inputs can be traced further


# ----------------------------------------------------------------------------- 1. forward trace


@dataclass
class Trace:
    """What one prompt's forward pass leaves for attribution (batch of one; [pos, ...] tensors)."""

    tokens: torch.Tensor  # [pos]
    embed: torch.Tensor  # [pos, d]
    resid: dict[str, torch.Tensor]  # "pre{l}" / "mid{l}" / "final" -> [pos, d]
    scale: dict[str, torch.Tensor]  # "attn{l}" / "mlp{l}" / "final" -> [pos], each norm's RMS scale
    # (and "attn_out{l}", the norm after attention, where the model has one: Gemma's ln1_post)
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
    T.require_no_skip(transcoders, "circuit attribution")
    tokens = tokens.reshape(-1).to(model.cfg.device)
    n_layers = model.cfg.n_layers
    layers = range(n_layers)
    repeat = model.cfg.n_heads // (model.cfg.n_key_value_heads or model.cfg.n_heads)
    mlp_in = {layer: hooks.sublayer_input_hook(Sublayer(layer, "mlp")) for layer in transcoders}
    per_layer = {
        "pre": [hooks.resid_pre(layer) for layer in layers],
        "mid": [hooks.resid_mid(layer) for layer in layers],
        "attn_scale": [hooks.norm_scale(layer, "attn") for layer in layers],
        "mlp_scale": [hooks.norm_scale(layer, "mlp") for layer in layers],
        "attn_out_scale": [hooks.norm_scale(layer, "attn", after=True) for layer in layers
                           if model.cfg.use_normalization_before_and_after],
        "pattern": [hooks.attn_point(layer, "pattern") for layer in layers],
        "v": [hooks.attn_point(layer, "v") for layer in layers],
        "attn_out": [Sublayer(layer, "attn").out_hook for layer in layers],
        "mlp_out": [Sublayer(layer, "mlp").out_hook for layer in layers],
    }
    final, final_scale, sink = hooks.resid_post(n_layers - 1), hooks.norm_scale(None), T.sink_hook(model)
    embed = hooks.embed()
    names = {embed, final, final_scale, sink, *mlp_in.values()}.union(*per_layer.values())
    cache: dict[str, torch.Tensor] = {}
    hooks.run(model, tokens[None], hooks.capture(names, cache))
    cache = {name: act[0] for name, act in cache.items()}  # batch of one

    def stack(point: str) -> torch.Tensor:
        return torch.stack([cache[name] for name in per_layer[point]])

    resid = {"final": cache[final]}
    scale = {"final": cache[final_scale][:, 0]}
    for layer in layers:
        resid[f"pre{layer}"] = cache[per_layer["pre"][layer]]
        resid[f"mid{layer}"] = cache[per_layer["mid"][layer]]
        scale[f"attn{layer}"] = cache[per_layer["attn_scale"][layer]][:, 0]
        scale[f"mlp{layer}"] = cache[per_layer["mlp_scale"][layer]][:, 0]
        if per_layer["attn_out_scale"]:
            scale[f"attn_out{layer}"] = cache[per_layer["attn_out_scale"][layer]][:, 0]
    out = Trace(
        tokens=tokens,
        embed=cache[embed],
        resid=resid,
        scale=scale,
        pattern=stack("pattern"),
        values=stack("v").repeat_interleave(repeat, dim=2),
        attn_out=stack("attn_out"),
        mlp_out=stack("mlp_out"),
        sinks=T.model_sinks(model, tokens, cache[sink]),
    )
    for layer, tc in transcoders.items():
        acts = tc.encode(cache[mlp_in[layer]]) * ~out.sinks[:, None]
        out.acts[layer] = acts
        out.tc_out[layer] = tc.decode(acts)
    return out


# ----------------------------------------------------------------------------- 2. targets


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
    vector: torch.Tensor  # [d]
    bias: float = 0.0

    def key(self) -> tuple:
        """A hashable description (without the vector)."""
        return (self.site, self.layer, self.pos)

    def plus(self, other: Target) -> Target:
        """The sum of two targets read at the same site (a node reached from two parents)."""
        if other.key() != self.key():
            raise ValueError(f"cannot add targets read at {self.key()} and {other.key()}")
        return replace(self, vector=self.vector + other.vector, bias=self.bias + other.bias)


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
    """The constant [d_sae] in a feature's pre-activation x . W_enc + b (folding a pre-bias if it has one)."""
    pre = getattr(transcoder, "b_pre", None)
    return transcoder.b_enc if pre is None else transcoder.b_enc - pre @ transcoder.W_enc


def logit_target(
    model: HookedTransformer, pos: int, up: Sequence[int], down: Sequence[int]
) -> Target:
    """mean logit of tokens ``up`` minus mean logit of tokens ``down`` at ``pos``."""
    vector = model.W_U[:, list(up)].mean(1) - model.W_U[:, list(down)].mean(1)
    bias = float(model.b_U[list(up)].mean() - model.b_U[list(down)].mean())
    return Target(model.cfg.n_layers - 1, "final", pos, vector, bias)


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


# ----------------------------------------------------------------------------- 3. contributions


@torch.no_grad()
def contributions(
    model: HookedTransformer,
    tr: Trace,
    target: Target,
    transcoders: Mapping[int, Any],
    feature_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    head_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> pd.DataFrame:
    """Every upstream term's contribution to ``target`` (a row each), so that their sum plus
    ``target.bias`` equals ``target_value``.

    Columns: kind (embed / feature / tc_error / tc_bias / mlp (a layer without transcoder, or any
    layer at an attention sink) / head /
    attn_bias), layer, pos (where the term is written), unit (token, feature or head), src (a head's
    source position, else -1), attribution. A feature's attribution is activation x (W_dec[i] . v)
    and ``weight`` holds the input-invariant part W_dec[i] . v. ``feature_fn`` (default
    ``feature_attributions``) and ``head_fn`` (default ``head_terms``) compute the two kinds of term.
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
        terms = (feature_fn or feature_attributions)(tr.acts[layer][p], tc.W_dec, v)
        active = torch.nonzero(tr.acts[layer][p] > 0).flatten()
        for i in active.tolist():
            rows.append({**_row("feature", layer, p, i, float(terms[i])), "weight": float(weights[i])})
        rows.append(_row("tc_bias", layer, p, -1, float(tc.b_dec @ v)))
        rows.append(
            _row("tc_error", layer, p, -1, float((tr.mlp_out[layer, p] - tr.tc_out[layer][p]) @ v))
        )
    for layer in attn_layers:
        attn, v_attn = model.blocks[layer].attn, through_norm_after_attention(model, tr, layer, p, v)
        per_source = torch.stack([
            (head_fn or head_terms)(tr.pattern[layer, h, p, : p + 1], tr.values[layer, : p + 1, h], attn.W_O[h], v_attn)
            for h in range(attn.W_O.shape[0])
        ])  # [head, src]
        for h, s in torch.nonzero(per_source.abs() > 0).tolist():
            rows.append(_row("head", layer, p, h, float(per_source[h, s]), src=s))
        rows.append(_row("attn_bias", layer, p, -1, float(attn.b_O @ v_attn)))
    return pd.DataFrame(rows)


def through_norm_after_attention(
    model: HookedTransformer, tr: Trace, layer: int, pos: int, v: torch.Tensor
) -> torch.Tensor:
    """The direction ``v`` [d] that reads the residual stream, as the heads of ``layer`` writing at
    ``pos`` see it: unchanged, or, where a norm follows the attention (Gemma's ln1_post), times its
    weight and divided by its scale on the prompt (held constant, like every norm's scale here)."""
    if not model.cfg.use_normalization_before_and_after:
        return v
    return weighted_after_attention(model, layer, v) / tr.scale[f"attn_out{layer}"][pos]


def weighted_after_attention(model: HookedTransformer, layer: int, w: torch.Tensor) -> torch.Tensor:
    """Directions ``w`` ([d] or [d, n]) read from the residual stream, times the weight of the norm
    after ``layer``'s attention (Gemma's ln1_post; ``w`` itself where there is none): the
    input-invariant part of what that norm does to every head's write."""
    if not model.cfg.use_normalization_before_and_after:
        return w
    weight = model.blocks[layer].ln1_post.w.to(w)
    return w * (weight if w.dim() == 1 else weight[:, None])


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


# ----------------------------------------------------------------------------- 4. chaining along paths


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
        out_dir = attn.W_O[index] @ through_norm_after_attention(model, tr, layer, pos, v)  # [d_head]
        vector = weight * (attn.W_V[index] @ out_dir)
        bias = float(weight * (attn.b_V[index] @ out_dir))
        return Target(layer, "attn", src, vector, bias)
    return None


# ----------------------------------------------------------------------------- 5. a check that can fail


def error_share(table: pd.DataFrame) -> float:
    """Share of a contributions table's transcoder terms carried by error nodes:
    sum |tc_error| / (sum |tc_error| + sum |feature|)."""
    err = float(table[table.kind == "tc_error"].attribution.abs().sum())
    feat = float(table[table.kind == "feature"].attribution.abs().sum())
    return err / (err + feat) if err + feat > 0 else float("nan")
