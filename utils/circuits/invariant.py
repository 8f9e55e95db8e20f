"""Input-invariant connections between transcoder features, and how well they predict attributions.

Dunefsky, Chlenski & Nanda 2024, circuit analysis with transcoders: a feature's attribution to a later one factorises into
an input-dependent activation and an input-invariant weight, W_dec[i] . W_enc[:, j] straight through
the residual stream, or W_dec[i] W_V W_O W_enc[:, j] through a head's OV circuit. The weights are
read from the transcoders alone, before any prompt.

* ``feature_weights`` / ``ov_weights``: the weights, directly and through one head (``ov_read``: a
  direction taken back through heads' OV circuits).
* ``all_feature_weights``: the weight of every upstream feature (active or not) for one target.
* Checks that can fail: ``invariant_vs_dependent`` (the weight-attribution correlation) against
  ``permuted_correlation_null`` (activations shuffled across features), and ``topk_overlap`` (are the
  most attributed features among the heaviest weights?) against its chance level.

Public names: ``feature_weights``, ``ov_weights``, ``ov_read``, ``all_feature_weights``, ``invariant_vs_dependent``,
``permuted_correlation_null``, ``topk_overlap``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils.circuits.attribution import (
    Target,
    Trace,
    scale_key,
    upstream_layers,
    weighted_after_attention,
)

__all__ = [
    "all_feature_weights",
    "feature_weights",
    "invariant_vs_dependent",
    "ov_read",
    "ov_weights",
    "permuted_correlation_null",
    "topk_overlap",
]


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
    w_enc = downstream.W_enc if feature is None else downstream.W_enc[:, feature]
    return upstream.W_dec @ ov_read(model, layer, w_enc, head)


def ov_read(model: HookedTransformer, layer: int, w: torch.Tensor, head: int | None = None) -> torch.Tensor:
    """Directions ``w`` ([d] or [d, n]) read after ``layer``'s attention, taken back through one head's OV
    circuit to the residual stream it reads, W_V W_O w (times the weight of a norm after the attention,
    Gemma's): [d] or [d, n] for ``head``, with a leading [head] axis for every head when it is None."""
    attn = model.blocks[layer].attn
    w_v, w_o = (attn.W_V, attn.W_O) if head is None else (attn.W_V[head], attn.W_O[head])
    return w_v @ (w_o @ weighted_after_attention(model, layer, w).to(w_o))


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


def invariant_vs_dependent(tables: Sequence[pd.DataFrame]) -> float:
    """Correlation, over every feature row of every table, between the input-invariant weight and
    the input-dependent attribution (activation x weight)."""
    rows = pd.concat([t[t.kind == "feature"] for t in tables]) if tables else pd.DataFrame()
    if len(rows) < 3:
        return float("nan")
    return float(np.corrcoef(rows.weight, rows.attribution)[0, 1])


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
