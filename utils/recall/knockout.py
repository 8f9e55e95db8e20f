"""Where information flows to the prediction: attention knockout and its critical points.

Geva et al. (2023), "Localizing Information Flow via Attention Knockout": the attention edges into
the last position from one kind of position are cut in a window of layers around each layer, and
the predicted token's probability is compared with the clean run. The layers where a cut hurts
most are the critical points: the relation (non-subject) positions matter first, in lower layers
(step B of the paper's Figure 1, relation propagation), the subject positions later, in the
upper-middle layers (step C, attribute extraction).

* ``knockout_mask``: the [n_pos, n_pos] edges cut for one prompt and one source of
  ``KNOCKOUT_SOURCES`` (subject, non-subject, last, first token).
* ``window_layers``: the window of layers around a centre layer.
* ``knockout_sweep``: every source x window x fact, many knockouts per batched forward pass that
  reruns the last position alone on the frozen keys and values of the others
  (``frozen_prefix_cache``, ``batch_masks``; attribute extraction reuses both).
* ``knockout_loop``: the plain reference, one full forward pass per knockout.
* ``KnockoutResult``: the probabilities, and their relative change per fact or as mean curves.

Public names: ``KNOCKOUT_SOURCES``, ``KNOCKOUT_LABELS``, ``knockout_mask``, ``window_layers``,
``knockout_sweep``, ``knockout_loop``, ``KnockoutResult``, ``batch_masks``, ``frozen_prefix_cache``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import ActivationCache, HookedTransformer
from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

from utils import hooks
from utils.prompts import project
from utils.recall.facts import FactBatch, equal_length_batches, require_range_index

__all__ = [
    "KNOCKOUT_LABELS",
    "KNOCKOUT_SOURCES",
    "KnockoutResult",
    "batch_masks",
    "frozen_prefix_cache",
    "knockout_loop",
    "knockout_mask",
    "knockout_sweep",
    "window_layers",
]

KNOCKOUT_SOURCES = (
    "subject",
    "non-subject",
    "last",
    "first",
)  # which edges into the last position are cut
KNOCKOUT_LABELS = {
    "subject": "subject → last",
    "non-subject": "non-subject → last",
    "last": "last → last",
    "first": "first token → last",
}


def window_layers(center: int, window: int, n_layers: int) -> range:
    """The ``window`` consecutive layers centred on ``center``, clipped to the model."""
    if window < 1 or not 0 <= center < n_layers:
        raise ValueError(f"need window >= 1 and 0 <= center < {n_layers}, got {window}, {center}")
    first = center - window // 2
    return range(max(first, 0), min(first + window, n_layers))


def knockout_mask(
    n_pos: int, last: int, subj_start: int, subj_end: int, source: str
) -> torch.Tensor:
    """[n_pos, n_pos] bool mask of the edges into ``last`` from ``source`` positions (see KNOCKOUT_SOURCES)."""
    if source not in KNOCKOUT_SOURCES:
        raise ValueError(f"source must be one of {KNOCKOUT_SOURCES}, got {source!r}")
    if not 0 <= subj_start < subj_end <= last < n_pos:
        raise ValueError(f"bad span [{subj_start}, {subj_end}) for last position {last} of {n_pos}")
    sources = torch.zeros(n_pos, dtype=torch.bool)
    if source == "subject":
        sources[subj_start:subj_end] = True
    elif source == "non-subject":
        sources[:last] = True
        sources[subj_start:subj_end] = False
    elif source == "last":
        sources[last] = True
    else:  # the first position: the attention sink when the model prepends no BOS token
        sources[0] = True
    mask = torch.zeros(n_pos, n_pos, dtype=torch.bool)
    mask[last] = sources
    return mask


def batch_masks(
    batch: FactBatch, sources: Sequence[str], mask_fn: Callable[..., torch.Tensor] | None = None
) -> torch.Tensor:
    """[len(sources) * G, n, n] knockout masks of every fact of ``batch``, source-major, each made by
    ``mask_fn`` (default ``knockout_mask``; a learner's own in notebook 01)."""
    n, make = batch.tokens.shape[1], mask_fn or knockout_mask
    return torch.stack(
        [
            make(n, int(last), int(s0), int(s1), source)
            for source in sources
            for last, s0, s1 in zip(batch.last, batch.subj_start, batch.subj_end, strict=True)
        ]
    ).to(batch.tokens.device)


def frozen_prefix_cache(
    model: HookedTransformer, cache: ActivationCache, n_prefix: int, repeat: int
) -> TransformerLensKeyValueCache:
    """A frozen key/value cache of the first ``n_prefix`` positions of a run's cached keys and values
    ([batch, pos, kv_head, d_head] per layer), each prompt ``repeat`` times: [repeat * batch, n_prefix, ...]."""
    entries = [
        TransformerLensKeyValueCacheEntry(
            cache[hooks.attn_point(layer, "k")][:, :n_prefix].repeat(repeat, 1, 1, 1),
            cache[hooks.attn_point(layer, "v")][:, :n_prefix].repeat(repeat, 1, 1, 1),
            frozen=True,
        )
        for layer in range(model.cfg.n_layers)
    ]
    rows = entries[0].past_keys.shape[0]
    mask = torch.ones(rows, n_prefix, dtype=torch.int, device=entries[0].past_keys.device)
    return TransformerLensKeyValueCache(entries, mask, frozen=True)


def _target_probs(
    model: HookedTransformer, resid: torch.Tensor, last: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Probability [B] of each row's target at its last position, from final-layer residuals [B, n, d]."""
    logits = project(model, resid[torch.arange(len(last), device=resid.device), last])
    return logits.float().softmax(-1).gather(-1, targets[:, None])[:, 0].cpu()


@dataclass
class KnockoutResult:
    """Target probabilities without (``p_base`` [F]) and with (``p_new`` [source, center, F]) knockouts."""

    sources: tuple[str, ...]
    centers: list[int]
    window: int
    p_base: torch.Tensor
    p_new: torch.Tensor

    def change(self, rows: Sequence[bool] | None = None) -> torch.Tensor:
        """Relative change of each fact's target probability, in %, [source, center, F], for the facts
        in ``rows`` (a bool mask; default: all)."""
        change = (self.p_new - self.p_base) / self.p_base * 100
        return change if rows is None else change[..., torch.tensor(np.asarray(rows, dtype=bool))]

    def relative_change(self, rows: Sequence[bool] | None = None) -> pd.DataFrame:
        """Mean relative change, in %, per centre layer and source, over the facts in ``rows`` (default: all)."""
        change = self.change(rows)
        table = pd.DataFrame(
            {KNOCKOUT_LABELS[s]: change[i].mean(-1).numpy() for i, s in enumerate(self.sources)}
        )
        return table.assign(layer=self.centers).set_index("layer")


@torch.no_grad()
def knockout_sweep(
    model: HookedTransformer,
    facts: pd.DataFrame,
    window: int,
    centers: Sequence[int] | None = None,
    sources: Sequence[str] = KNOCKOUT_SOURCES,
    fact_batch: int = 32,
    rows_per_pass: int = 256,
    progress: bool = True,
    mask_fn: Callable[..., torch.Tensor] | None = None,
) -> KnockoutResult:
    """Attention knockouts of every source in a window around every centre, batched (masks by
    ``mask_fn``, default ``knockout_mask``).

    Only edges *into the last position* are cut, so every other position is unchanged. Per group of
    facts of equal length, one full pass caches their keys, values and residual stream; then the
    (window, source, fact) knockouts run together, up to ``rows_per_pass`` per forward pass, on the
    last position alone with the cached keys and values of the others, resumed from the first layer
    any of their windows touches, with one [batch, 1, src] mask per layer (empty for rows whose
    window excludes that layer). ``knockout_loop`` gives the same numbers slowly.
    """
    require_range_index(facts)
    n_layers, k = model.cfg.n_layers, len(sources)
    centers = list(range(n_layers)) if centers is None else list(centers)
    windows = [window_layers(c, window, n_layers) for c in centers]
    p_base = torch.zeros(len(facts))
    p_new = torch.zeros(k, len(centers), len(facts))
    groups = list(equal_length_batches(model, facts, fact_batch))
    names = {hooks.resid_pre(w[0]) for w in windows} | {
        hooks.attn_point(layer, kv) for layer in range(n_layers) for kv in "kv"
    }
    bar = tqdm(total=len(groups) * len(centers), desc="knockouts", disable=not progress)
    for g in groups:
        n, rows = g.tokens.shape[1], k * len(g.index)
        final, cache = model.run_with_cache(
            g.tokens, stop_at_layer=n_layers, names_filter=lambda name: name in names
        )
        p_base[g.index] = _target_probs(model, final, g.last, g.targets)
        masks = batch_masks(g, sources, mask_fn)[:, n - 1 :]  # the last position's row: [k * G, 1, n]
        per_pass = max(1, rows_per_pass // rows)
        for first in range(0, len(windows), per_pass):
            chunk = range(first, min(first + per_pass, len(windows)))
            start = min(windows[j][0] for j in chunk)
            fwd = []
            for layer in range(start, n_layers):
                inside = torch.tensor([layer in windows[j] for j in chunk], device=masks.device)
                if inside.any():
                    fwd += hooks.block_attention(
                        [layer], (masks[None] & inside[:, None, None, None]).flatten(0, 1)
                    )
            resid = cache[hooks.resid_pre(start)][:, n - 1 :].repeat(len(chunk) * k, 1, 1)
            out = hooks.run(
                model,
                resid,
                fwd,
                start_at_layer=start,
                stop_at_layer=n_layers,
                past_kv_cache=frozen_prefix_cache(model, cache, n - 1, len(chunk) * k),
            )
            targets = g.targets.repeat(len(chunk) * k)
            probs = _target_probs(model, out, torch.zeros_like(targets), targets).view(
                len(chunk), k, -1
            )
            p_new[:, chunk.start : chunk.stop, g.index] = probs.transpose(0, 1)
            bar.update(len(chunk))
    bar.close()
    return KnockoutResult(tuple(sources), centers, window, p_base, p_new)


@torch.no_grad()
def knockout_loop(
    model: HookedTransformer,
    facts: pd.DataFrame,
    window: int,
    centers: Sequence[int] | None = None,
    sources: Sequence[str] = KNOCKOUT_SOURCES,
) -> KnockoutResult:
    """The straightforward reference for ``knockout_sweep``: one full forward pass per fact, source and window."""
    n_layers = model.cfg.n_layers
    centers = list(range(n_layers)) if centers is None else list(centers)
    p_base = torch.zeros(len(facts))
    p_new = torch.zeros(len(sources), len(centers), len(facts))
    for f, row in enumerate(facts.itertuples()):
        tokens = model.to_tokens(row.prompt, prepend_bos=model.cfg.default_prepend_bos)
        n, target = tokens.shape[1], int(row.target_token)
        p_base[f] = model(tokens)[0, -1].softmax(-1)[target]
        for i, source in enumerate(sources):
            mask = knockout_mask(n, n - 1, row.subj_tok_start, row.subj_tok_end, source)
            for j, center in enumerate(centers):
                fwd = hooks.block_attention(window_layers(center, window, n_layers), mask)
                p_new[i, j, f] = hooks.run(model, tokens, fwd)[0, -1].softmax(-1)[target]
    return KnockoutResult(tuple(sources), centers, window, p_base, p_new)
