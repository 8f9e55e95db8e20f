"""Checks for notebook 04's exercises: the closed-form refit of W_out, SPRINT's sensitivity score, its ranking.

``check_fit_down_projection`` compares the learner's refit with ``utils.pruning.fit_down_projection``
on tiny random problems (with and without ridge, leading batch dimensions) and on a real window of
the tiny model. ``check_relative_l1`` compares the sensitivity with ``utils.pruning.relative_l1``.
``check_sprint_ranking`` compares one step of SPRINT's greedy loop, the ranking of every unpruned
sublayer by (tuned) sensitivity / latency, with ``SprintScorer.scores`` on the tiny model.

Public names: ``check_fit_down_projection``, ``check_relative_l1``, ``check_sprint_ranking``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from utils.checks import Case, check
from utils.models import tiny_model
from utils.pruning import (
    Checkpoints,
    LatencyModel,
    SprintScorer,
    fit_down_projection,
    refit_data,
    relative_l1,
)

__all__ = ["check_fit_down_projection", "check_relative_l1", "check_sprint_ranking"]


def _tiny_window() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, target, W_out) of removing the tiny model's first attention, on random tokens."""
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.d_vocab, (6, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        data = refit_data(SprintScorer(Checkpoints(model, tokens), 0.0), 0)
    return data.hidden, data.target, data.w0


def _refit_cases() -> list[Case]:
    """Inputs on which the learner's refit must match the reference."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(40, 6, generator=g), torch.randn(6, 3, generator=g)
    target = x @ torch.randn(6, 3, generator=g) + 0.1 * torch.randn(40, 3, generator=g)
    hidden, window_target, w_out = _tiny_window()
    return [
        Case("x [40, 6], target [40, 3], w0 [6, 3], ridge 0 (plain least squares)", (x, target, w, 0.0)),
        Case("x [40, 6], target [40, 3], w0 [6, 3], ridge 0.5 (pulled towards w0)", (x, target, w, 0.5)),
        Case("x [4, 10, 6] with leading dims, target [4, 10, 3], ridge 0.1", (x.reshape(4, 10, 6), target.reshape(4, 10, 3), w, 0.1)),
        Case("x float32 [40, 6], w0 float64: the answer comes back in w0's dtype", (x, target, w.double(), 0.5)),
        Case(f"tiny model window: hidden {tuple(hidden.shape)}, W_out {tuple(w_out.shape)}, ridge 1.0",
             (hidden, window_target, w_out, 1.0)),
    ]


def check_fit_down_projection(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Check ``fn(x, target, w0, ridge)`` against the reference refit."""
    return check("Exercise 4.1 fit_down_projection", fn, fit_down_projection, _refit_cases(), atol=1e-4, rtol=1e-3)


def _l1_cases() -> list[Case]:
    """Inputs on which the learner's sensitivity must match the reference."""
    g = torch.Generator().manual_seed(1)
    y = torch.randn(3, 5, 4, generator=g)
    scaled = y.clone()
    scaled[0] *= 100.0  # one sample on a much larger scale: per-sample normalisation matters
    return [
        Case("y, y_hat [3, 5, 4] (windows, positions, d_model)", (y, y + 0.1 * torch.randn(3, 5, 4, generator=g))),
        Case("samples on different scales [3, 5, 4]", (scaled, scaled + 0.1 * torch.randn(3, 5, 4, generator=g))),
        Case("y, y_hat [2, 7] (two samples, flat)", (torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g))),
        Case("y_hat equal to y (nothing removed): 0", (y, y.clone())),
    ]


def check_relative_l1(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> Callable:
    """Check ``fn(y, y_hat)`` against SPRINT's relative L1 sensitivity."""
    return check("Exercise 4.2 relative_l1", fn, relative_l1, _l1_cases())


def _ranking(scorer: SprintScorer, latency: LatencyModel | None, top_k: int) -> list[tuple[float, int]]:
    """The reference ranking as (score, sublayer index) pairs, lowest first."""
    return [(score, cand.index) for score, cand in scorer.scores(latency, top_k, tune=True)]


def _ranking_cases() -> list[Case]:
    """Scorers on the tiny model (dense, and with one sublayer already pruned), with and without latency."""
    model = tiny_model(n_layers=3, seed=1)
    tokens = torch.randint(0, model.cfg.d_vocab, (4, 12), generator=torch.Generator().manual_seed(5))
    latency = LatencyModel(dense_s=1.0, per_sublayer_s={"attn": 0.03, "mlp": 0.01}, n_layers=3)
    with torch.no_grad():
        pruned = SprintScorer(Checkpoints(copy.deepcopy(model), tokens), 0.1)
        pruned.commit(pruned.tuned(2))
        return [
            Case("dense tiny model (3 layers), top_k 2, attention 3x the cost of an MLP",
                 (SprintScorer(Checkpoints(model, tokens), 0.1), latency, 2)),
            Case("top_k 0 (nothing tuned)", (SprintScorer(Checkpoints(model, tokens), 0.1), latency, 0)),
            Case("latency None (latency-unaware: every sublayer costs 1)", (SprintScorer(Checkpoints(model, tokens), 0.1), None, 3)),
            Case("sublayer 2 already pruned (and the next MLP's W_out tuned), top_k 6", (pruned, latency, 6)),
        ]


def check_sprint_ranking(fn: Callable[..., list[tuple[float, int]]]) -> Callable[..., list[tuple[float, int]]]:
    """Check ``fn(scorer, latency, top_k) -> [(score, index), ...]`` (lowest first) against SPRINT's ranking."""
    with torch.no_grad():
        return check("Exercise 4.3 sprint_ranking", fn, _ranking, _ranking_cases(), hide=[SprintScorer.scores],
                     view=lambda pairs: [(float(score), int(index)) for score, index in pairs])
