"""Attention sinks: the tokens this repository leaves out of every transcoder step (notebook 02 says why).

Position 0 of a window, BOS/EOS/pad tokens and the rare tokens that carry a *massive activation* (a
residual stream hundreds of times larger than the median; Sun et al. 2024, "Massive activations in
large language models") get MLP writes hundreds of times larger than other tokens'. They are left out
of training and of every metric, and a spliced model keeps the real MLP write there.

* known from the tokens alone: position 0 and the special tokens -> ``sink_mask``, ``special_token_ids``;
* massive activations, read from the residual stream at the middle layer -> ``massive_tokens``,
  ``sink_layer``, ``sink_hook``, ``sink_resid``;
* both together, for a model and its tokens -> ``model_sinks``.

Public names: ``model_sinks``, ``sink_mask``, ``special_token_ids``, ``massive_tokens``,
``sink_layer``, ``sink_hook``, ``sink_resid``, ``MASSIVE_FACTOR``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformer_lens import HookedTransformer

from utils.hooks import resid_pre

__all__ = [
    "MASSIVE_FACTOR",
    "massive_tokens",
    "model_sinks",
    "sink_hook",
    "sink_layer",
    "sink_mask",
    "sink_resid",
    "special_token_ids",
]

MASSIVE_FACTOR = 10.0  # a residual norm this many times the median marks a massive-activation token


def special_token_ids(model: HookedTransformer) -> list[int]:
    """The tokenizer's BOS, EOS and pad ids (the tokens that act as attention sinks)."""
    tok = model.tokenizer
    if tok is None:
        return []
    return sorted({i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if i is not None})


def sink_mask(tokens: torch.Tensor, special_ids: Sequence[int] = ()) -> torch.Tensor:
    """True [..., pos] at the attention sinks known from the tokens [..., pos] alone: position 0 and
    every special token."""
    mask = torch.isin(tokens, torch.tensor(list(special_ids), dtype=tokens.dtype, device=tokens.device))
    mask[..., 0] = True
    return mask


def sink_layer(model: HookedTransformer) -> int:
    """The layer whose residual input shows massive activations: the middle one (they form in the
    early layers and persist; SmolLM2-135M's reach ~80-160x the median norm at layer 15, while every
    other token stays below 2x)."""
    return model.cfg.n_layers // 2


def massive_tokens(resid: torch.Tensor, exclude: torch.Tensor | None = None, factor: float = MASSIVE_FACTOR) -> torch.Tensor:
    """True [..., pos] where the residual stream ``resid`` [..., pos, d] has a norm above ``factor`` x
    the median norm of the tokens not in ``exclude`` [..., pos] (massive activations)."""
    norms = resid.float().norm(dim=-1)
    reference = norms if exclude is None else norms[~exclude.to(norms.device)]
    if reference.numel() == 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    return norms > factor * reference.median()


def sink_hook(model: HookedTransformer) -> str:
    """The hook whose activation ``model_sinks`` reads: the residual input of ``sink_layer``."""
    return resid_pre(sink_layer(model))


@torch.no_grad()
def sink_resid(model: HookedTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream [..., pos, d] at the input of ``sink_layer`` for ``tokens`` [..., pos]
    (runs the model up to it)."""
    flat = tokens.reshape(-1, tokens.shape[-1]).to(model.cfg.device)
    resid = model(flat, stop_at_layer=sink_layer(model))
    return resid.reshape(*tokens.shape, -1)


def model_sinks(model: HookedTransformer, tokens: torch.Tensor, resid: torch.Tensor | None = None) -> torch.Tensor:
    """Attention sinks [..., pos] of ``tokens`` [..., pos]: ``sink_mask`` with ``model``'s special
    tokens, plus the massive-activation tokens of ``resid`` (the residual at ``sink_layer``,
    [..., pos, d]; pass it when a run already cached it, otherwise the model is run up to that layer)."""
    marked = sink_mask(tokens, special_token_ids(model))
    if resid is None:
        resid = sink_resid(model, tokens)
    return marked | massive_tokens(resid, marked).to(marked.device)
