"""Every pruning method notebook 04 compares, by name: SPRINT, its ablations and the baselines.

``run_method(name, ...)`` runs one of ``METHODS`` from the dense model (restoring it before and
after), so methods never see each other's pruning or tuning.

Public names: ``METHODS``, ``run_method``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformer_lens import HookedTransformer

from utils.pruning.baselines import BASELINES
from utils.pruning.latency import LatencyModel
from utils.pruning.pruned_model import PruneResult, StepCallback, restore_dense
from utils.pruning.sprint import SPRINT_VARIANTS, run_sprint

__all__ = ["METHODS", "run_method"]

METHODS = [*SPRINT_VARIANTS, *BASELINES]


def run_method(
    name: str,
    model: HookedTransformer,
    calib: torch.Tensor,
    latency: LatencyModel,
    targets: Sequence[float],
    originals: dict[int, torch.Tensor],
    top_k: int = 5,
    ridge: float = 0.1,
    on_step: StepCallback | None = None,
) -> PruneResult:
    """Run one method (a SPRINT variant or a baseline) on ``calib`` [n, pos] from the dense model; restores it afterwards.

    ``on_step(model)`` is called after every pruning step with the model in its pruned (and tuned)
    state; its dict is stored in ``result.steps`` and its time is left out of the pruning time."""
    if name not in SPRINT_VARIANTS and name not in BASELINES:
        raise ValueError(f"unknown method {name!r}; choose from {METHODS}")
    calib = calib.to(model.cfg.device)  # the greedy losses compare logits with these tokens
    restore_dense(model, originals)
    try:
        if name in SPRINT_VARIANTS:
            aware, tune = SPRINT_VARIANTS[name]
            return run_sprint(model, calib, latency, targets, aware, tune, top_k, ridge, name, on_step=on_step)
        return BASELINES[name](model, calib, latency, targets, on_step)
    finally:
        restore_dense(model, originals)
