"""Heads that extract attributes, and the subject -> attribute mappings in their OV circuits.

Geva et al. (2023), "Attribute Extraction via Attention", on single heads: attention heads often
encode subject -> attribute mappings in their parameters. A subject position's vector goes through
a head's value and output weights (its OV circuit) and is read in the vocabulary; the head maps the
subject to the attribute when the fact's attribute is among the top tokens. The vector is the
head's actual input in the prompt, or the subject's token embedding through the layer's input norm
(the weights alone).

* ``top_heads`` / ``control_heads``: the heads with most extraction events (events from
  ``utils.recall.extraction``), and seeded controls among those with fewest.
* ``ov_circuit``: a head's W_V, b_V, W_O (grouped-query attention aware).
* ``head_attribute_hits``: per head, the share of facts whose attribute is in the top k of the OV
  image of some subject position, from ``OV_INPUTS`` (hidden state or token embedding).

Public names: ``OV_INPUTS``, ``ov_circuit``, ``top_heads``, ``control_heads``,
``head_attribute_hits``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks
from utils.prompts import project
from utils.recall.facts import fact_batches, require_range_index
from utils.recall.readout import FACTORED_NORMS, head_readout
from utils.sublayers import Sublayer

__all__ = ["OV_INPUTS", "control_heads", "head_attribute_hits", "ov_circuit", "top_heads"]

OV_INPUTS = ("hidden", "embedding")


def ov_circuit(
    model: HookedTransformer, layer: int, head: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head ``head``'s value weights [d_model, d_head], value bias [d_head] and output weights [d_head, d_model].

    With grouped-query attention, query head h reads key/value head h // (n_heads // n_kv_heads).
    """
    attn = model.blocks[layer].attn
    n_heads = model.cfg.n_heads
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in [0, {n_heads}), got {head}")
    if hasattr(attn, "_W_V"):  # GQA: stored per key/value head
        kv = head // (n_heads // attn._W_V.shape[0])
        return attn._W_V[kv], attn._b_V[kv], attn.W_O[head]
    return attn.W_V[head], attn.b_V[head], attn.W_O[head]


def top_heads(events: torch.Tensor, n: int) -> list[tuple[int, int, int]]:
    """The ``n`` heads with most extraction events (``events`` [F, L, H]) as (layer, head, count)."""
    counts = events.sum(0)
    order = counts.flatten().argsort(descending=True, stable=True)[:n]
    n_heads = counts.shape[1]
    return [(int(i) // n_heads, int(i) % n_heads, int(counts.flatten()[i])) for i in order]


def control_heads(
    events: torch.Tensor, n: int, seed: int = 0, exclude: Sequence[tuple[int, ...]] = ()
) -> list[tuple[int, int, int]]:
    """``n`` heads picked at random (seeded) among those with the fewest extraction events
    (``events`` [F, L, H]), leaving out the (layer, head, ...) tuples in ``exclude``."""
    counts = events.sum(0)
    n_heads = counts.shape[1]
    taken = {h[0] * n_heads + h[1] for h in exclude}
    free = [i for i in range(counts.numel()) if i not in taken]
    low = min(int(counts.flatten()[i]) for i in free)
    fewest = [i for i in free if int(counts.flatten()[i]) == low]
    chosen = random.Random(seed).sample(fewest, min(n, len(fewest)))
    return [(i // n_heads, i % n_heads, int(counts.flatten()[i])) for i in sorted(chosen)]


@torch.no_grad()
def head_attribute_hits(
    model: HookedTransformer,
    facts: pd.DataFrame,
    heads: Sequence[tuple[int, ...]],
    k: int = 10,
    fact_batch: int = 32,
    n_examples: int = 0,
    inputs: str = "hidden",
    progress: bool = True,
) -> tuple[pd.DataFrame, list[dict], torch.Tensor]:
    """How often each head's OV circuit maps a subject token to the fact's target.

    For each head (layer, head, ...), a vector per subject position goes through the head's OV
    circuit (W_V, then W_O) and is read in the vocabulary; a hit is the target in the top ``k`` at
    any subject position. ``inputs`` picks the vectors: ``"hidden"``, the head's actual normalised
    input in the prompt, or ``"embedding"``, the subject tokens' embeddings through the layer's
    input norm (the weights alone). Returns a table per head, for the first head the top tokens at
    the last subject position of ``n_examples`` facts, and the hits [F, heads] (bool).
    """
    require_range_index(facts)
    if inputs not in OV_INPUTS:
        raise ValueError(f"inputs must be one of {OV_INPUTS}, got {inputs!r}")
    layers = sorted({h[0] for h in heads})
    names = {hooks.sublayer_input_hook(Sublayer(layer, "attn")) for layer in layers}
    hits = torch.zeros(len(facts), len(heads), dtype=torch.bool)
    examples: list[dict] = []
    # Without an unembedding bias, the positive norm scale cannot change a top-k: each head's
    # [d_head, vocab] readout, formed once, ranks the tokens as project does
    factored = type(model.ln_final).__name__ in FACTORED_NORMS and not model.b_U.any()
    readouts = [head_readout(model, ov_circuit(model, h[0], h[1])[2]) for h in heads] if factored else []
    for g in tqdm(
        list(fact_batches(model, facts, fact_batch)), desc="OV circuits", disable=not progress
    ):
        if inputs == "hidden":
            _, cache = model.run_with_cache(
                g.tokens, stop_at_layer=max(layers) + 1, names_filter=lambda n: n in names
            )
        width = int((g.subj_end - g.subj_start).max())
        offsets = torch.arange(width, device=g.tokens.device)
        pos = (g.subj_start[:, None] + offsets).clamp(max=g.tokens.shape[1] - 1)  # [G, width]
        inside = g.subj_start[:, None] + offsets < g.subj_end[:, None]
        for i, (layer, head, *_) in enumerate(heads):
            w_v, b_v, w_o = ov_circuit(model, layer, head)
            if inputs == "hidden":
                x = cache[hooks.sublayer_input_hook(Sublayer(layer, "attn"))][g.rows[:, None], pos]
            else:
                x = model.blocks[layer].ln1(model.W_E[g.tokens[g.rows[:, None], pos]])
            values = x @ w_v + b_v
            logits = values @ readouts[i] if readouts else project(model, values @ w_o)  # same top-k
            top = logits.topk(k, dim=-1).indices  # [G, width, k]
            found = ((top == g.targets[:, None, None]).any(-1) & inside).any(-1)
            hits[g.index, i] = found.cpu()
            if i == 0 and len(examples) < n_examples:
                last_subject = g.subj_end - g.subj_start - 1
                for r in range(min(n_examples - len(examples), len(g.index))):
                    row = facts.loc[int(g.index[r])]
                    examples.append(
                        {
                            "subject": row.subject,
                            "target": model.to_string(int(g.targets[r])).strip(),
                            "head": f"L{layer}.H{head}",
                            "top tokens": [
                                model.to_string(int(t)).strip()
                                for t in top[r, int(last_subject[r])]
                            ],
                        }
                    )
    table = pd.DataFrame(
        [
            {"layer": h[0], "head": h[1], "hit_rate": float(hits[:, i].float().mean())}
            for i, h in enumerate(heads)
        ]
    )
    return table, examples, hits
