"""The facts every step of the recall analysis reads, and the batches they are read in.

Geva, Bastings, Filippova & Globerson (2023) follow subject–relation queries ("Beats Music is owned
by") that the model completes correctly. Their experimental setup keeps the facts whose top-1
prediction is the target's first token; that prediction is the one every later step follows.

* ``load_fact_table``: the facts (the shipped authored table, or ROME's ``known_1000`` online).
* ``prepare_facts``: the facts the model knows, with the subject's token span
  (``locate_subjects``): ``subj_tok_start``/``subj_tok_end``, ``n_tokens``, ``subject_first``.
* ``fact_batches`` / ``equal_length_batches``: right-padded ``FactBatch``es holding the positions
  every step reads (the last real position, the subject span, the target token). Right padding
  never changes a causal model's outputs at the real positions, so each quantity is read at each
  prompt's last real position; the attention knockout groups prompts of equal length instead, to
  reuse their keys and values.

A facts table is a DataFrame with ``prompt``, ``subject``, ``subject_start``/``subject_end``
(characters) and ``target``; ``prepare_facts`` adds ``target_token`` and the token span, and
returns it indexed 0..F-1, which every step requires (``require_range_index``).

Public names: ``load_fact_table``, ``locate_subjects``, ``prepare_facts``, ``FactBatch``,
``fact_batches``, ``equal_length_batches``, ``require_range_index``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from utils.data import load_facts, load_known_1000, token_span
from utils.prompts import known_facts, pad_right

__all__ = [
    "FactBatch",
    "equal_length_batches",
    "fact_batches",
    "load_fact_table",
    "locate_subjects",
    "prepare_facts",
    "require_range_index",
]


def load_fact_table(source: str = "shipped") -> pd.DataFrame:
    """The facts: ``"shipped"`` (authored table), ``"known_1000"`` (ROME's, online) or a known_1000 path."""
    if source == "shipped":
        return load_facts()
    return load_known_1000() if source == "known_1000" else load_known_1000(source)


def locate_subjects(model: HookedTransformer, facts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Add the subject's token span (``subj_tok_start``, ``subj_tok_end``), ``n_tokens`` and
    ``subject_first`` (the subject starts at position 0, the attention sink of a model without BOS).

    Spans come from the tokenizer's offsets (shifted by one when the model prepends BOS). Facts
    whose subject cannot be located are dropped; returns the located facts and how many were dropped.
    """
    bos = int(bool(model.cfg.default_prepend_bos))
    starts, ends, lengths, keep = [], [], [], []
    for row in facts.itertuples():
        span = token_span(model.tokenizer, row.prompt, int(row.subject_start), int(row.subject_end))
        n_tokens = len(model.tokenizer(row.prompt, add_special_tokens=False)["input_ids"]) + bos
        # a subject must leave the last position outside it, or "subject -> last" is meaningless
        ok = span is not None and span[1] + bos < n_tokens
        keep.append(ok)
        if ok:
            starts.append(span[0] + bos)
            ends.append(span[1] + bos)
            lengths.append(n_tokens)
    located = facts[keep].copy()
    located["subj_tok_start"], located["subj_tok_end"], located["n_tokens"] = starts, ends, lengths
    located["subject_first"] = located.subj_tok_start == 0
    return located.reset_index(drop=True), len(facts) - len(located)


def prepare_facts(
    model: HookedTransformer,
    facts: pd.DataFrame,
    n_facts: int,
    seed: int = 0,
    max_candidates: int = 0,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Facts the model knows (top-1 = target's first token), with subject spans, at most ``n_facts`` (0: all).

    ``max_candidates`` > 0 first samples that many facts (stratified by relation) to keep small
    runs small; 0 tries them all. Returns the facts and the counts at each step (candidates, known, skipped, used).
    """
    if n_facts < 0:
        raise ValueError(f"n_facts must be >= 0 (0 uses every known fact), got {n_facts}")
    candidates = facts
    if 0 < max_candidates < len(facts):
        shuffled = facts.sample(frac=1.0, random_state=seed)
        candidates = shuffled.assign(_r=shuffled.groupby("relation").cumcount()).sort_values(
            "_r", kind="stable"
        )
        candidates = candidates.head(max_candidates).drop(columns="_r").sort_index()
    known = known_facts(model, candidates)
    located, skipped = locate_subjects(model, known)
    used = (
        located.sample(n=min(n_facts, len(located)), random_state=seed)
        if 0 < n_facts < len(located)
        else located
    )
    counts = {
        "candidates": len(candidates),
        "known": len(known),
        "skipped_no_subject_span": skipped,
        "used": len(used),
    }
    if used.empty:
        raise ValueError(
            f"no usable facts ({counts}); raise max_candidates or check the facts table"
        )
    return used.sort_index().reset_index(drop=True), counts


def require_range_index(facts: pd.DataFrame) -> None:
    """Refuse facts not indexed 0..F-1: every step writes its results at the facts' row numbers."""
    if not facts.index.equals(pd.RangeIndex(len(facts))):
        raise ValueError(
            "facts must be indexed 0..F-1 (as prepare_facts returns them); call .reset_index(drop=True)"
        )


@dataclass
class FactBatch:
    """A right-padded batch of G facts, with the positions every step reads."""

    index: torch.Tensor  # [G] row numbers in the facts table
    tokens: torch.Tensor  # [G, n]
    last: torch.Tensor  # [G] last real position
    subj_start: torch.Tensor  # [G]
    subj_end: torch.Tensor  # [G], exclusive
    targets: torch.Tensor  # [G] target token

    @property
    def rows(self) -> torch.Tensor:
        """0..G-1, for gathering one position per row."""
        return torch.arange(len(self.index), device=self.tokens.device)


def _groups(facts: pd.DataFrame, size: int, sort_by: str = "n_tokens") -> Iterator[pd.DataFrame]:
    """Consecutive groups of facts of similar ``sort_by`` (a token length: keeps padding small)."""
    if size < 1:
        raise ValueError(f"fact_batch must be >= 1, got {size}")
    ordered = facts.sort_values(sort_by, kind="stable")
    for start in range(0, len(ordered), size):
        yield ordered.iloc[start : start + size]


def fact_batches(
    model: HookedTransformer, facts: pd.DataFrame, size: int, sort_by: str = "n_tokens"
) -> Iterator[FactBatch]:
    """Right-padded batches of ``facts``; ``index`` holds their labels (row numbers of the full table)."""
    device = model.cfg.device
    for group in _groups(facts, size, sort_by):
        tokens, lengths = pad_right(model, list(group.prompt))
        if not torch.equal(lengths, torch.tensor(list(group.n_tokens))):
            raise ValueError(
                "the facts' n_tokens do not match the model's tokenization; rerun prepare_facts"
            )
        start, end, targets = (
            torch.tensor(group[col].to_numpy(dtype="int64"), device=device)
            for col in ("subj_tok_start", "subj_tok_end", "target_token")
        )
        index = torch.tensor(group.index.to_numpy())
        yield FactBatch(index, tokens, (lengths - 1).to(device), start, end, targets)


def equal_length_batches(
    model: HookedTransformer, facts: pd.DataFrame, size: int
) -> Iterator[FactBatch]:
    """Batches of facts whose prompts have one length, so that they share one last position."""
    for _, same in facts.groupby("n_tokens"):
        yield from fact_batches(model, same, size)
