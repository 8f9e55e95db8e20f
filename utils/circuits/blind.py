"""The blind case study: what a feature fires on, guessed from weights alone, then checked on text.

Dunefsky, Chlenski & Nanda 2024, "blind case studies": pick a feature by index, without
reading its activating text; form a hypothesis from the input-invariant circuit that feeds it (the
layer-0 features connected to it most strongly, read through their de-embeddings: directly for
tokens at its own position, through attention heads' OV circuits for tokens earlier in the context);
only then look at where it fires.

* ``layer0_hypotheses``: the hypothesis (a ``Hypothesis``) of each feature, from weights only.
* ``hypothesis_hits``: its hit rate on the feature's top-activating tokens.
* ``blind_scores``: that hit rate against a null, another feature's hypothesis on the same contexts.

Public names: ``Hypothesis``, ``token_word``, ``layer0_hypotheses``, ``hypothesis_hits``, ``blind_scores``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils import transcoders as T
from utils.circuits.invariant import ov_read

__all__ = ["Hypothesis", "blind_scores", "hypothesis_hits", "layer0_hypotheses", "token_word"]


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
        up.W_dec @ ov_read(model, i, w_enc).to(up.W_dec) for i in range(1, layer + 1)
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
    ``tokens``' [batch, pos] flattened order) that the hypothesis predicts: the token itself is one of
    its ``current`` tokens, or one of the ``window`` tokens before it is one of its ``context`` tokens."""
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
    on ``tokens`` [batch, pos]."""
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
