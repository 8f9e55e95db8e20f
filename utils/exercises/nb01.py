"""Checks for notebook 01's exercises: the attention-knockout mask and the attributes rate."""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils import recall
from utils.checks import Case, check

__all__ = ["check_attributes_rate", "check_knockout_mask"]


def check_knockout_mask(knockout_mask: Callable) -> Callable:
    """Exercise 1.1: the [n_pos, n_pos] bool mask of the edges into the last position from a source."""
    cases = [
        Case(
            f"n_pos={n}, last={last}, subject [{s0}, {s1}), source={source!r}",
            (n, last, s0, s1, source),
        )
        for n, last, s0, s1 in [(7, 6, 2, 4), (5, 4, 0, 2), (9, 6, 3, 4)]
        for source in recall.KNOCKOUT_SOURCES
    ]
    return check("Exercise 1.1 knockout_mask", knockout_mask, recall.knockout_mask, cases)


def _rate(
    logits: torch.Tensor, attributes: torch.Tensor, eligible: torch.Tensor, top: int, keep: int
) -> float:
    return float(recall.attributes_rate(logits, attributes, eligible, top, keep))


def check_attributes_rate(attributes_rate: Callable) -> Callable:
    """Exercise 1.2: the attributes rate of one hidden state's projection (logits [V] -> a float)."""
    gen = torch.Generator().manual_seed(0)
    cases = []
    for vocab, top, keep, p_eligible in [
        (40, 10, 4, 0.6),
        (200, 50, 10, 0.5),
        (30, 30, 30, 0.9),
        (60, 8, 5, 0.3),
        (25, 10, 4, 0.0),  # the documented edge case: no eligible token among the top -> 0
    ]:
        logits = torch.randn(vocab, generator=gen)
        eligible = torch.rand(vocab, generator=gen) < p_eligible
        attributes = torch.rand(vocab, generator=gen) < 0.4
        cases.append(
            Case(
                f"V={vocab}, top={top}, keep={keep}, {int(eligible.sum())} eligible tokens",
                (logits, attributes, eligible, top, keep),
            )
        )
    return check("Exercise 1.2 attributes_rate", attributes_rate, _rate, cases, hide=[recall.attributes_rate])
