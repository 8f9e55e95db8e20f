"""Checks for notebook 01's exercises: the knockout mask, the attributes rate, one knockout forward pass.

``check_knockout_mask`` (1.1) compares with ``utils.recall.knockout_mask``; ``check_attributes_rate``
(1.3) with ``utils.recall.attributes_rate`` on batched projections (the edge cases among them: fewer
eligible tokens than ``keep``, none at all, attributes broadcast over a batch);
``check_knockout_probability`` (1.2) with one forward pass of the tiny model under
``utils.hooks.block_attention``.

Public names: ``check_knockout_mask``, ``check_attributes_rate``, ``check_knockout_probability``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils import hooks, recall
from utils.checks import Case, check
from utils.models import tiny_model

__all__ = ["check_attributes_rate", "check_knockout_mask", "check_knockout_probability"]


def check_knockout_mask(knockout_mask: Callable) -> Callable:
    """Exercise 1.1: the [n_pos, n_pos] bool mask of the edges into the last position from a source."""
    cases = [
        Case(
            f"n_pos={n}, last={last}, subject [{s0}, {s1}), source={source!r}",
            (n, last, s0, s1, source),
        )
        for n, last, s0, s1 in [(7, 6, 2, 4), (5, 4, 0, 2), (9, 6, 3, 4), (3, 2, 0, 2)]
        for source in recall.KNOCKOUT_SOURCES
    ]
    return check("Exercise 1.1 knockout_mask", knockout_mask, recall.knockout_mask, cases)


def _rate_cases() -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    cases = []
    for shape, vocab, top, keep, p_eligible, per_row in [
        ((), 40, 10, 4, 0.6, True),
        ((3,), 200, 50, 10, 0.5, True),
        ((2, 4), 30, 30, 30, 0.9, False),
        ((5,), 60, 8, 5, 0.3, True),
        ((2,), 25, 10, 4, 0.0, True),  # the documented edge case: no eligible token -> 0
    ]:
        logits = torch.randn(*shape, vocab, generator=gen)
        eligible = torch.rand(vocab, generator=gen) < p_eligible
        attributes = torch.rand(*(shape if per_row else ()), vocab, generator=gen) < 0.4
        where = "one attribute set per row" if per_row else "one attribute set [V] for every row"
        cases.append(Case(
            f"logits {(*shape, vocab)}, top={top}, keep={keep}, {int(eligible.sum())} eligible tokens, {where}",
            (logits, attributes, eligible, top, keep),
        ))
    return cases


def check_attributes_rate(attributes_rate: Callable) -> Callable:
    """Exercise 1.3: the attributes rate of projections ``logits`` [..., V] -> a float32 tensor [...]."""
    return check("Exercise 1.3 attributes_rate", attributes_rate, recall.attributes_rate, _rate_cases())


def _knockout_probability(model, tokens: torch.Tensor, mask: torch.Tensor, layers: range, target: int) -> torch.Tensor:
    """The reference: one forward pass with the edges of ``mask`` blocked in ``layers``."""
    logits = hooks.run(model, tokens, hooks.block_attention(layers, mask))
    return logits[0, -1].softmax(-1)[target]


def _knockout_cases() -> list[Case]:
    model = tiny_model(n_layers=3, seed=4)
    gen = torch.Generator().manual_seed(1)
    cases = []
    for n, (s0, s1), source, layers in [
        (7, (2, 4), "subject", range(0, 2)),
        (6, (0, 2), "non-subject", range(1, 3)),
        (5, (1, 3), "first", range(2, 3)),
    ]:
        tokens = torch.randint(0, model.cfg.d_vocab, (1, n), generator=gen)
        mask = recall.knockout_mask(n, n - 1, s0, s1, source)
        target = int(torch.randint(0, model.cfg.d_vocab, (), generator=gen))
        cases.append(Case(f"tiny model, {n} tokens, {source} edges cut in layers {list(layers)}",
                          (model, tokens, mask, layers, target)))
    return cases


def check_knockout_probability(fn: Callable) -> Callable:
    """Exercise 1.2: ``fn(model, tokens, mask, layers, target)``, the target's probability under a knockout."""
    with torch.no_grad():
        return check("Exercise 1.2 knockout_probability", fn, _knockout_probability, _knockout_cases(),
                     hide=[hooks.block_attention, recall.knockout_loop])
