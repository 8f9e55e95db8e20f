"""Checks for notebook 00's exercise: reading a residual stream with the logit lens.

Public names: ``check_decode_residual`` (exercise 0.1, against ``utils.tour.decode_residual``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from utils.checks import Case, check
from utils.models import tiny_model
from utils.tour import decode_residual

__all__ = ["check_decode_residual"]


def check_decode_residual(decode_residual_fn: Callable) -> Callable:
    """Exercise 0.1: check, then return, the learner's (or, if skipped, the reference) ``decode_residual``; compare the learner's ``decode_residual(model, resid)`` with ``utils.tour``'s."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(0)
    cases = [
        Case(f"{batch} residual vectors of width {model.cfg.d_model}, scaled by {scale}", (model, scale * torch.randn(batch, model.cfg.d_model, generator=generator)))
        for batch, scale in ((1, 1.0), (4, 10.0), (3, 0.1))
    ]
    return check("Exercise 0.1 decode_residual", decode_residual_fn, decode_residual, cases)
