"""Reading a transcoder's features (Dunefsky, Chlenski & Nanda 2024), and the blind comparison with SAEs.

The paper reads a feature from three sides and compares transcoders with SAEs in a blind study:

* where it fires: the contexts of its highest activations, the token marked ``[[ ]]`` ->
  ``top_contexts`` (``live_features`` picks features worth reading);
* what drives it from the input: its encoder column against every token embedding (scaled as the
  MLP's RMS norm scales it), the "de-embedding", input-invariant since it needs no prompt ->
  ``de_embedding``, ``rms_embeddings``;
* what it does to the output: its decoder row through the unembedding -> ``logit_effect``;
* the blind interpretability study: anonymous cards of contexts and a hidden key (``blind_cards``),
  ratings revealed per dictionary (``unblind``) and the difference of two dictionaries' mean ratings
  with a permutation p-value (``rating_difference``); ``token_consistency`` is an automatic stand-in
  for a person's rating (not a judgement of meaning).

Public names: ``live_features``, ``top_contexts``, ``rms_embeddings``, ``de_embedding``,
``logit_effect``, ``token_consistency``, ``blind_cards``, ``unblind``, ``rating_difference``,
``HIGHLIGHT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils.stats import permutation_p_value

__all__ = [
    "HIGHLIGHT",
    "blind_cards",
    "de_embedding",
    "live_features",
    "logit_effect",
    "rating_difference",
    "rms_embeddings",
    "token_consistency",
    "top_contexts",
    "unblind",
]

HIGHLIGHT = ("[[", "]]")  # how a context marks the token a feature fires on


def live_features(acts: torch.Tensor, n: int, seed: int = 0, min_count: int = 3) -> list[int]:
    """``n`` random features active on at least ``min_count`` tokens of ``acts`` [n_tokens, d_sae]
    (fewer if there aren't)."""
    counts = (acts > 0).sum(0)
    live = torch.nonzero(counts >= min_count).flatten()
    order = torch.randperm(len(live), generator=torch.Generator().manual_seed(seed))
    return sorted(int(i) for i in live[order[:n]])


def top_contexts(
    model: HookedTransformer,
    tokens: torch.Tensor,
    acts: torch.Tensor,
    k: int = 8,
    left: int = 12,
    right: int = 3,
) -> pd.DataFrame:
    """The ``k`` tokens where a feature fires most: activation, token and its context, the token
    marked with [[ ]]. ``tokens`` is [batch, pos]; ``acts`` is the feature's activation per token
    ([n_tokens], in ``tokens``' flattened order)."""
    ctx = tokens.shape[1]
    n_live = int((acts > 0).sum())
    top = torch.topk(acts, min(k, n_live))
    rows = []
    for value, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        b, p = divmod(flat, ctx)
        before = model.to_string(tokens[b, max(p - left, 0) : p]) if p > 0 else ""
        token = model.to_string(tokens[b, p : p + 1])
        after = model.to_string(tokens[b, p + 1 : p + 1 + right]) if p + 1 < ctx else ""
        text = before + HIGHLIGHT[0] + token + HIGHLIGHT[1] + after
        rows.append({"activation": value, "token": token, "context": text.replace("\n", "⏎")})
    return pd.DataFrame(rows, columns=["activation", "token", "context"])


def rms_embeddings(model: HookedTransformer) -> torch.Tensor:
    """Every token embedding [d_vocab, d_model] scaled to unit RMS, as an MLP's RMS norm sees a token
    read straight from the embedding (the norm's weight is folded into the model)."""
    return model.W_E / model.W_E.pow(2).mean(-1, keepdim=True).sqrt()


def de_embedding(
    model: HookedTransformer, transcoder: Any, feature: int, k: int = 10
) -> pd.DataFrame:
    """Input tokens that drive a transcoder feature directly: each embedding, scaled to unit RMS
    (``rms_embeddings``), times the feature's encoder column."""
    emb = rms_embeddings(model)
    scores = emb @ transcoder.W_enc[:, feature].to(emb)
    return _token_table(model, scores, k, "de-embedding score")


def logit_effect(
    model: HookedTransformer, dictionary: Any, feature: int, k: int = 10
) -> pd.DataFrame:
    """Tokens whose logits the feature's decoder row pushes up most (W_dec[f] @ W_U; the final
    norm's scale is treated as a constant)."""
    return _token_table(
        model, dictionary.W_dec[feature].to(model.W_U) @ model.W_U, k, "logit effect"
    )


def _token_table(model: HookedTransformer, scores: torch.Tensor, k: int, name: str) -> pd.DataFrame:
    top = torch.topk(scores.detach(), k)
    return pd.DataFrame(
        {"token": [model.to_string(int(i)) for i in top.indices], name: top.values.tolist()}
    )


def token_consistency(contexts: pd.DataFrame) -> float:
    """An automatic stand-in for a human rating: the share of a feature's top contexts whose
    highlighted token is its most common one (1 = a single-token feature; not a judgement of
    meaning)."""
    if contexts.empty:
        return float("nan")
    return float(contexts.token.str.strip().str.lower().value_counts().iloc[0] / len(contexts))


def blind_cards(
    contexts: Mapping[str, Mapping[int, pd.DataFrame]], seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle every (dictionary, feature)'s contexts into anonymous cards for a blind rating.

    ``contexts`` maps a dictionary name to {feature: top_contexts table}. Returns ``cards`` (card
    id and the contexts as text, nothing else) and the ``key`` (card -> dictionary, feature) to
    keep hidden until the ratings are in.
    """
    items = [
        (name, feature, table)
        for name, feats in contexts.items()
        for feature, table in feats.items()
    ]
    order = np.random.default_rng(seed).permutation(len(items))
    cards, key = [], []
    for card, i in enumerate(order):
        name, feature, table = items[i]
        cards.append({"card": card, "contexts": "\n".join(table.context)})
        key.append({"card": card, "dictionary": name, "feature": feature})
    return pd.DataFrame(cards), pd.DataFrame(key)


def unblind(ratings: Mapping[int, float], key: pd.DataFrame) -> pd.DataFrame:
    """Mean and count of the ratings per dictionary, once every card has been rated."""
    missing = sorted(set(key.card) - set(ratings))
    if missing:
        raise ValueError(f"cards {missing} have no rating yet; rate every card before unblinding")
    rated = key.assign(rating=key.card.map(ratings))
    return rated.groupby("dictionary").rating.agg(["mean", "count"]).reset_index()


def rating_difference(
    ratings: Mapping[int, float], key: pd.DataFrame, first: str, second: str, n_perm: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean rating of dictionary ``first`` minus ``second`` over their cards, with a two-sided
    permutation p-value (dictionary labels shuffled across the cards) and n (cards rated)."""
    rated = key[key.dictionary.isin([first, second])].assign(rating=key.card.map(ratings)).dropna()
    values, is_first = rated.rating.to_numpy(float), (rated.dictionary == first).to_numpy()
    if is_first.all() or not is_first.any():
        return {"difference": float("nan"), "p_value": float("nan"), "n": len(rated)}

    def diff(labels: np.ndarray) -> float:
        return float(values[labels].mean() - values[~labels].mean())

    rng = np.random.default_rng(seed)
    null = [abs(diff(rng.permutation(is_first))) for _ in range(n_perm)]
    observed = diff(is_first)
    return {"difference": observed, "p_value": permutation_p_value(abs(observed), null), "n": len(rated)}
