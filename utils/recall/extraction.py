"""Attribute extraction: which sublayers write the answer into the last position.

Geva et al. (2023), "Attribute Extraction via Attention" (step C of the paper's Figure 1). Each
attention and MLP sublayer's write at the last position (and each attention head's) is read on its
own in the vocabulary; an extraction event is a write whose top-1 token is the predicted
attribute. The paper finds events far more often in attention than in MLP sublayers, and far fewer
once the subject -> last edges are cut in the upper layers (the attention knockout of
``utils.recall.knockout``).

* ``sublayer_top_tokens``: top-1 token of every sublayer's and head's write at the last position,
  also with the subject -> last edges blocked from a layer on (the last position alone is rerun on
  the frozen keys and values of the others).
* ``extraction_events``: where the top-1 token is the fact's target.
* ``extraction_summary``: the extraction rate per layer and the shares of facts with any event.

Public names: ``sublayer_top_tokens``, ``extraction_events``, ``extraction_summary``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.recall.facts import equal_length_batches, fact_batches, require_range_index
from utils.recall.knockout import batch_masks, frozen_prefix_cache
from utils.recall.readout import head_top_tokens, top_tokens
from utils.sublayers import Sublayer

__all__ = ["extraction_events", "extraction_summary", "sublayer_top_tokens"]


def _write_hook(kind: str, layer: int) -> str:
    """The hook holding what ``kind`` writes at ``layer``: an attention or MLP sublayer's output, or
    each attention head's z ([batch, pos, head, d_head]) for ``"heads"``."""
    return hooks.attn_point(layer, "z") if kind == "heads" else Sublayer(layer, kind).out_hook


@torch.no_grad()
def sublayer_top_tokens(
    model: HookedTransformer,
    facts: pd.DataFrame,
    fact_batch: int = 32,
    heads: bool = True,
    block_subject_layers: Sequence[int] = (),
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Top-1 token of each attention and MLP output (and each head's output) at the last position.

    Returns ``attn`` and ``mlp`` [F, L] and, with ``heads``, ``heads`` [F, L, H]. With
    ``block_subject_layers``, also ``attn_blocked`` and ``mlp_blocked`` [F, L]: the same with the
    subject -> last edges cut in those layers. Cutting edges *into* the last position changes no
    other position, so only the last one is rerun, from the first blocked layer, with the cached
    keys and values of the others; below that layer the blocked tokens are the clean ones.
    """
    require_range_index(facts)
    n_layers, n_heads, device = model.cfg.n_layers, model.cfg.n_heads, model.cfg.device
    block = sorted(set(block_subject_layers))
    if block and not 0 <= block[0] <= block[-1] < n_layers:
        raise ValueError(f"block_subject_layers must lie in [0, {n_layers}), got {block}")
    kinds = ("attn", "mlp", "heads") if heads else ("attn", "mlp")
    names = {_write_hook(kind, layer): (kind, layer) for layer in range(n_layers) for kind in kinds}
    acts = {
        kind: torch.zeros(
            len(facts),
            n_layers,
            *([n_heads, model.cfg.d_head] if kind == "heads" else [model.cfg.d_model]),
            device=device,
        )
        for kind in kinds
    }
    cached = set(names)
    if block:  # the rerun needs every layer's keys and values, and groups of one length (one last position)
        start = block[0]
        cached |= {hooks.resid_pre(start)} | {
            hooks.attn_point(layer, kv) for layer in range(n_layers) for kv in "kv"
        }
        blocked = {
            kind: torch.zeros(len(facts), n_layers - start, model.cfg.d_model, device=device)
            for kind in ("attn", "mlp")
        }
        groups = list(equal_length_batches(model, facts, fact_batch))
    else:
        groups = list(fact_batches(model, facts, fact_batch))
    for g in tqdm(groups, desc="sublayer projections", disable=not progress):
        _, cache = model.run_with_cache(
            g.tokens, stop_at_layer=n_layers, names_filter=lambda n: n in cached
        )
        rows = g.index.to(device)
        for name, (kind, layer) in names.items():
            acts[kind][rows, layer] = cache[name][g.rows, g.last]
        if block:
            n, store = g.tokens.shape[1], {}
            rerun = [_write_hook(kind, layer) for layer in range(start, n_layers) for kind in blocked]
            hooks.run(
                model,
                cache[hooks.resid_pre(start)][:, n - 1 :],
                hooks.block_attention(block, batch_masks(g, ["subject"])[:, n - 1 :])
                + hooks.capture(rerun, store),
                start_at_layer=start,
                stop_at_layer=n_layers,
                past_kv_cache=frozen_prefix_cache(model, cache, n - 1, 1),
            )
            for layer in range(start, n_layers):
                for kind, acts_blocked in blocked.items():
                    acts_blocked[rows, layer - start] = store[_write_hook(kind, layer)][:, 0]
    out = {kind: top_tokens(model, acts[kind]) for kind in ("attn", "mlp")}  # read once all facts are in
    if heads:
        out["heads"] = torch.stack(
            [head_top_tokens(model, acts["heads"][:, layer], layer).cpu() for layer in range(n_layers)], 1
        )
    if block:
        out |= {
            f"{kind}_blocked": torch.cat([out[kind][:, :start], top_tokens(model, x)], 1)
            for kind, x in blocked.items()
        }
    return out


def extraction_events(top_tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bool events [F, ...]: the sublayer's top-1 token is the fact's target (``top_tokens`` [F, ...], ``targets`` [F])."""
    if top_tokens.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{top_tokens.shape[0]} facts of top tokens but {targets.shape[0]} targets"
        )
    return top_tokens == targets.view(-1, *[1] * (top_tokens.dim() - 1))


def extraction_summary(
    attn: torch.Tensor, mlp: torch.Tensor
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-layer extraction rates and the shares of facts with >= 1 attention / MLP event ([F, L] bools)."""
    rates = pd.DataFrame({"attn": attn.float().mean(0).numpy(), "mlp": mlp.float().mean(0).numpy()})
    rates.index.name = "layer"
    shares = {
        "attn_share": float(attn.any(-1).float().mean()),
        "mlp_share": float(mlp.any(-1).float().mean()),
    }
    return rates, shares
