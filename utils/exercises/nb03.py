"""Checks for notebook 03's exercises: attribution terms checked for completeness, a path-search step.

``check_feature_attributions`` compares ``fn(acts, W_dec, v) -> [d_sae]`` with
``utils.circuits.feature_attributions`` and then puts the learner's terms into a real attribution
(a tiny model with transcoders), as the notebook's trace does (``contributions``' ``feature_fn``):
with every other term, they must add up to the target's value. ``check_head_terms`` does the same for one head's terms from
each source position, ``fn(pattern, values, W_O, v) -> [src]`` (``head_fn``). ``check_top_contributions``
compares one step of the path search, ``fn(table, branches) -> the rows that become edges``, with
``utils.circuits.top_contributions`` on contribution tables of a tiny model and on edge cases.

Public names: ``check_feature_attributions``, ``check_head_terms``, ``check_top_contributions``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from utils import circuits as C
from utils.checks import Case, ExerciseFailed, check
from utils.models import tiny_model
from utils.transcoders import random_transcoder

__all__ = ["check_feature_attributions", "check_head_terms", "check_top_contributions"]


def _setup():
    """A 3-layer tiny model with random transcoders on layers 0 and 1, traced on one prompt."""
    torch.set_grad_enabled(False)
    model = tiny_model(n_layers=3, seed=2)
    transcoders = {layer: random_transcoder(model.cfg.d_model, 48, seed=layer, bias_std=0.3) for layer in (0, 1)}
    tokens = torch.randint(0, model.cfg.d_vocab, (10,), generator=torch.Generator().manual_seed(3))
    tr = C.trace(model, tokens, transcoders)
    target = C.logit_target(model, 7, [1, 2], [3])
    return model, transcoders, tr, target


def _complete(kind: str, **fn: Callable) -> None:
    """The tiny model's attribution with the learner's ``kind`` terms (``fn``: ``feature_fn`` or
    ``head_fn`` of ``contributions``) must add up to the target's value."""
    model, transcoders, tr, target = _setup()
    value = C.target_value(tr, target)
    total = lambda **fns: float(C.contributions(model, tr, target, transcoders, **fns).attribution.sum()) + target.bias  # noqa: E731
    got = total(**fn)
    if abs(got - value) > 1e-3 * max(1.0, abs(value)):
        raise ExerciseFailed(
            f"✗ completeness: with your {kind} terms the contributions add up to {got:.5g}, "
            f"but the target's value is {value:.5g} (the reference's terms give {total():.5g})"
        )
    print(f"✓ completeness: with your {kind} terms every contribution adds up to the target's value {value:.4g}")


def _feature_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    return [
        Case("acts [6] (some zero), W_dec [6, 4], v [4]",
             (torch.relu(torch.randn(6, generator=g)), torch.randn(6, 4, generator=g), torch.randn(4, generator=g))),
        Case("acts [10], W_dec [10, 8] with rows of unequal norm, v [8]",
             (torch.rand(10, generator=g), torch.randn(10, 8, generator=g) * torch.arange(1, 11)[:, None], torch.randn(8, generator=g))),
    ]


def check_feature_attributions(fn: Callable) -> Callable:
    """Check ``fn(acts, W_dec, v) -> [d_sae]`` on random inputs, then for completeness on a tiny model."""
    fn = check("Exercise 3.2 feature_attribution_terms", fn, C.feature_attributions, _feature_cases())
    _complete("feature", feature_fn=fn)
    return fn


def _head_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    return [
        Case("5 sources, d_head 3, d 4",
             (torch.softmax(torch.randn(5, generator=g), 0), torch.randn(5, 3, generator=g), torch.randn(3, 4, generator=g), torch.randn(4, generator=g))),
        Case("1 source (the first position), d_head 8, d 16",
             (torch.ones(1), torch.randn(1, 8, generator=g), torch.randn(8, 16, generator=g), torch.randn(16, generator=g))),
    ]


def check_head_terms(fn: Callable) -> Callable:
    """Check ``fn(pattern, values, W_O, v) -> [src]`` on random inputs, then for completeness on a tiny model."""
    fn = check("Exercise 3.3 head_attribution_terms", fn, C.head_terms, _head_cases())
    _complete("head", head_fn=fn)
    return fn


def _edges(rows: pd.DataFrame) -> tuple[list, torch.Tensor]:
    """What is compared: the chosen rows' labels in order, and their attributions."""
    return list(rows.index), torch.tensor(rows.attribution.to_numpy(dtype=float), dtype=torch.float64)


def _branch_cases() -> list[Case]:
    model, transcoders, tr, target = _setup()
    table = C.contributions(model, tr, target, transcoders)
    few = table[table.kind.isin(["feature", "embed", "bias"])].head(5)  # fewer expandable rows than branches
    leaves_only = table[~table.kind.isin(C.EXPANDABLE)]
    return [
        Case(f"a tiny model's contribution table ({len(table)} rows), branches 3", (table, 3)),
        Case("the same table, branches 1", (table, 1)),
        Case(f"{len(few)} rows, {int(few.kind.isin(C.EXPANDABLE).sum())} of them expandable, branches 4", (few, 4)),
        Case(f"only leaf rows ({len(leaves_only)}), branches 2", (leaves_only, 2)),
    ]


def check_top_contributions(fn: Callable[[pd.DataFrame, int], pd.DataFrame]) -> Callable:
    """Exercise 3.1: ``fn(table, branches)``, the rows of a node's contributions that become edges."""
    return check("Exercise 3.1 top_contributions", fn, C.top_contributions, _branch_cases(), view=_edges)
