"""Cloze accuracy on held-out corpus documents (LAMBADA-style last-word prediction).

An item is a document cut just before the last word of its last complete sentence; the model must
produce that whole word greedily (every token of it the argmax). Unlike templated probes, this asks
for general language-model quality on the held-out split of the corpus.

Public names: ``ClozeItem``, ``last_word_items``, ``cloze_correct``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transformer_lens import HookedTransformer

from utils.evaluation import encode_pair, token_loglikelihoods

__all__ = ["ClozeItem", "cloze_correct", "last_word_items"]

# a word of >= 3 letters after a space, ending a sentence (followed by whitespace or the end)
LAST_WORD = re.compile(r"(?<= )([A-Za-z]{3,})[.!?](?=\s|$)")


@dataclass(frozen=True)
class ClozeItem:
    """A context and the word that follows it (the target starts with a space)."""

    context: str
    target: str


def last_word_items(texts: Iterable[str], limit: int | None = None) -> list[ClozeItem]:
    """One item per text with a complete sentence: its text up to that sentence's last word."""
    items = []
    for text in texts:
        matches = list(LAST_WORD.finditer(text))
        if not matches:
            continue
        last = matches[-1]
        items.append(ClozeItem(text[: last.start(1) - 1], " " + last.group(1)))
        if limit is not None and len(items) == limit:
            break
    return items


def cloze_correct(model: HookedTransformer, items: Sequence[ClozeItem], max_ctx: int, batch_size: int = 16) -> list[bool]:
    """Per item: is every token of the target the model's argmax, given the last ``max_ctx`` context tokens."""
    if not items:
        raise ValueError("no cloze items: the texts have no complete sentence ending in a word")
    pairs = []
    for item in items:
        ctx, cont = encode_pair(model, item.context, item.target)
        pairs.append((ctx[-max_ctx:], cont))
    return [greedy for _, greedy in token_loglikelihoods(model, pairs, batch_size)]
