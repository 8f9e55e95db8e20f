"""Run batches of prompts of different lengths through a model and read the next-token logits.

Public names: ``next_token_logits`` (batched, length-sorted), ``logits_at`` (one position per row,
with hooks, optionally resumed at a layer), ``project`` (vectors read through the final norm and
the unembedding), ``pad_right``, ``first_target_token``, ``known_facts`` (the facts a model knows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from utils import hooks

__all__ = [
    "first_target_token",
    "known_facts",
    "logits_at",
    "next_token_logits",
    "pad_right",
    "project",
]


def pad_right(model: HookedTransformer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded tokens [batch, pos] for ``prompts`` and each prompt's length in tokens.

    Right padding never changes a causal model's outputs at the real positions, so the logits at
    position ``length - 1`` are exactly those of the prompt run alone.
    """
    encoded = [model.to_tokens(p, prepend_bos=model.cfg.default_prepend_bos)[0] for p in prompts]
    lengths = torch.tensor([len(t) for t in encoded])
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(encoded), int(lengths.max())), pad, dtype=torch.long)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = ids
    return tokens.to(model.cfg.device), lengths


@torch.no_grad()
def next_token_logits(
    model: HookedTransformer, prompts: Sequence[str], batch_size: int = 32, progress: bool = False
) -> torch.Tensor:
    """Logits [n_prompts, d_vocab] for the token after each prompt (only the last position is unembedded).

    Prompts are batched in order of length, so that little padding is computed."""
    # lengths from to_tokens: TransformerLens 3.9's to_str_tokens of a string fails on Gemma's tokenizer
    order = sorted(range(len(prompts)), key=lambda i: model.to_tokens(prompts[i]).shape[-1])
    out = torch.empty(len(prompts), model.cfg.d_vocab)
    for start in tqdm(range(0, len(prompts), batch_size), disable=not progress, desc="prompts"):
        rows = order[start : start + batch_size]
        tokens, lengths = pad_right(model, [prompts[i] for i in rows])
        out[rows] = logits_at(model, tokens, lengths - 1).float().cpu()
    return out


def logits_at(
    model: HookedTransformer,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
    start: tuple[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits [batch, vocab] at one position per row of ``tokens`` (``positions`` [batch]), with block-level
    ``fwd_hooks``; only those positions go through the final norm and the unembedding. ``start`` =
    (layer, residual input of that layer [batch, pos, d]) resumes a run there instead of embedding ``tokens``."""
    with hooks.attached(model, fwd_hooks):
        if start is None:
            resid = model(tokens, stop_at_layer=model.cfg.n_layers)
        elif start[0] < model.cfg.n_layers:
            resid = model(start[1], start_at_layer=start[0], stop_at_layer=model.cfg.n_layers)
        else:
            resid = start[1]
    return project(model, resid[torch.arange(len(tokens), device=resid.device), positions.to(resid.device)])


def project(model: HookedTransformer, x: torch.Tensor) -> torch.Tensor:
    """Logits of vectors ``x`` [..., d_model] read through the final norm and the unembedding."""
    shape = x.shape
    return model.unembed(model.ln_final(x.reshape(-1, 1, shape[-1])))[:, 0].reshape(*shape[:-1], -1)


def first_target_token(model: HookedTransformer, target: str) -> int:
    """The first token of `` target`` (targets follow their prompt after a space)."""
    return int(model.to_tokens(" " + target, prepend_bos=False)[0, 0])


def known_facts(model: HookedTransformer, facts: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """The facts whose prompt's top-1 next token is the target's first token, as the papers filter.

    Adds ``target_token`` (the model's own top-1 token, equal to the target's first token) and
    ``target_prob`` (its probability).
    """
    probs = next_token_logits(model, list(facts.prompt), batch_size, progress=True).softmax(-1)
    top = probs.argmax(-1)
    wanted = torch.tensor([first_target_token(model, t) for t in facts.target])
    keep = (top == wanted).numpy()
    known = facts[keep].copy()
    known["target_token"] = top[keep].numpy()
    known["target_prob"] = probs[torch.from_numpy(keep)].max(-1).values.numpy()
    return known.reset_index(drop=True)
