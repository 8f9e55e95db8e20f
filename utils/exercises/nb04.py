"""Checks for notebook 04's exercises: the closed-form refit of W_out and SPRINT's sensitivity score.

``check_fit_down_projection`` compares the learner's refit with ``utils.pruning.fit_down_projection``
on tiny random problems (with and without ridge, leading batch dimensions) and on a real window of
the tiny model. ``check_relative_l1`` compares the sensitivity with ``utils.pruning.relative_l1``.

Public names: ``check_fit_down_projection``, ``check_relative_l1``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.checks import Case, check
from utils.models import tiny_model
from utils.pruning import Checkpoints, SprintScorer, fit_down_projection, refit_data, relative_l1

__all__ = ["check_fit_down_projection", "check_relative_l1"]


def _tiny_window() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden, target, W_out) of removing the tiny model's first attention, on random tokens."""
    model = tiny_model()
    tokens = torch.randint(0, model.cfg.d_vocab, (6, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        data = refit_data(SprintScorer(Checkpoints(model, tokens), 0.0), 0)
    return data.hidden, data.y - data.rest, data.w0


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
        Case(f"tiny model window: hidden {tuple(hidden.shape)}, W_out {tuple(w_out.shape)}, ridge 1.0",
             (hidden, window_target, w_out, 1.0)),
    ]


def check_fit_down_projection(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``fn(x, target, w0, ridge)`` against the reference refit."""
    check("Exercise 4.1 fit_down_projection", fn, fit_down_projection, _refit_cases(), atol=1e-4, rtol=1e-3)


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
    ]


def check_relative_l1(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """Check ``fn(y, y_hat)`` against SPRINT's relative L1 sensitivity."""
    check("Exercise 4.2 relative_l1", fn, relative_l1, _l1_cases())
