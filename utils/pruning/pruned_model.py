"""What every pruning method shares: the pruned model's residual checkpoints, its snapshots, the run record.

Units are the 2L sublayers (``utils.sublayers``: 2i = layer i's attention, 2i+1 its MLP). Pruning a
sublayer skips it and its pre-norm: it is never computed, so measured speed-ups are real.

* ``Checkpoints``: the residual stream at every sublayer boundary of the current pruned model on
  the calibration tokens, refreshed only from the last change onwards (SPRINT's checkpointing;
  the greedy baselines reuse it too). ``apply_sublayer`` / ``run_range`` / ``final_logits`` run
  sublayers from a checkpoint.
* ``Snapshot``: a pruned model (skipped sublayers, tuned down-projections) at one target speed-up;
  ``apply_snapshot`` puts it on the model, ``restore_dense`` undoes all pruning and tuning (back to
  ``original_down_projections``).
* ``PruneResult``: one method's run (order, a snapshot per target, per-step record); ``record_step``
  appends a step, timed by a ``PruningClock`` that leaves out per-step evaluation.

Public names: ``Checkpoints``, ``apply_sublayer``, ``run_range``, ``final_logits``, ``Snapshot``,
``PruneResult``, ``apply_snapshot``, ``restore_dense``, ``original_down_projections``,
``PruningClock``, ``StepCallback``, ``record_step``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens import HookedTransformer
from transformer_lens.utilities.activation_functions import apply_softcap

from utils.pruning.latency import LatencyModel
from utils.sublayers import attn_write, mlp_write, set_skipped, skipped_now, sublayer

__all__ = [
    "Checkpoints",
    "PruneResult",
    "PruningClock",
    "Snapshot",
    "StepCallback",
    "apply_snapshot",
    "apply_sublayer",
    "final_logits",
    "original_down_projections",
    "record_step",
    "restore_dense",
    "run_range",
]

StepCallback = Callable[[HookedTransformer], dict]  # the pruned model -> metrics stored with the step


# ----------------------------------------------------------------------------- checkpoints


def apply_sublayer(model: HookedTransformer, index: int, x: torch.Tensor, skipped: set[int]) -> torch.Tensor:
    """Residual [batch, pos, d_model] after sublayer ``index`` given the residual ``x`` before it (identity if skipped)."""
    if index in skipped:
        return x
    s = sublayer(index)
    block = model.blocks[s.layer]
    return x + (attn_write(block, x) if s.kind == "attn" else mlp_write(block, x))


def run_range(model: HookedTransformer, x: torch.Tensor, start: int, stop: int, skipped: set[int]) -> torch.Tensor:
    """Residual [batch, pos, d_model] after sublayers ``start .. stop-1`` from the residual ``x`` before ``start``."""
    for index in range(start, stop):
        x = apply_sublayer(model, index, x, skipped)
    return x


def final_logits(model: HookedTransformer, resid: torch.Tensor) -> torch.Tensor:
    """Logits [batch, pos, d_vocab] from the final residual stream [batch, pos, d_model]."""
    return apply_softcap(model.unembed(model.ln_final(resid)), model.cfg.output_logits_soft_cap)


class Checkpoints:
    """Residual stream of the current pruned model at every sublayer boundary on calibration tokens.

    ``resid[j]`` is the input of sublayer j (``resid[2L]`` the final residual), each [n, pos, d].
    ``commit(index)`` re-computes only the boundaries after ``index``.
    """

    def __init__(self, model: HookedTransformer, tokens: torch.Tensor) -> None:
        self.model = model
        self.tokens = tokens.to(model.cfg.device)
        self.n_sublayers = 2 * model.cfg.n_layers
        self.skipped = {s.index for s in skipped_now(model)}
        self.resid: list[torch.Tensor] = [model(self.tokens, stop_at_layer=0)]
        self.refresh(0)

    def refresh(self, start: int) -> None:
        """Re-compute ``resid[start+1:]`` from ``resid[start]`` with the model's current weights."""
        del self.resid[start + 1 :]
        x = self.resid[start]
        for index in range(start, self.n_sublayers):
            x = apply_sublayer(self.model, index, x, self.skipped)
            self.resid.append(x)

    def commit(self, indices: Sequence[int]) -> None:
        """Skip ``indices`` on the model from now on and refresh the boundaries after the first one."""
        self.skipped |= set(indices)
        set_skipped(self.model, self.skipped)
        self.refresh(min(indices))

    def logits_without(self, indices: Sequence[int]) -> torch.Tensor:
        """Output logits [n, pos, d_vocab] if ``indices`` were also skipped (runs only from the first of them)."""
        start = min(indices)
        x = run_range(self.model, self.resid[start], start, self.n_sublayers, self.skipped | set(indices))
        return final_logits(self.model, x)


# ----------------------------------------------------------------------------- snapshots


def original_down_projections(model: HookedTransformer) -> dict[int, torch.Tensor]:
    """A copy of every MLP's down-projection W_out [d_mlp, d_model] by layer (to restore between methods)."""
    return {i: block.mlp.W_out.detach().clone() for i, block in enumerate(model.blocks)}


def restore_dense(model: HookedTransformer, originals: dict[int, torch.Tensor]) -> None:
    """Undo all pruning and tuning: no sublayer skipped, original W_out everywhere."""
    set_skipped(model, [])
    for layer, weight in originals.items():
        model.blocks[layer].mlp.W_out.data.copy_(weight)


@dataclass
class Snapshot:
    """A pruned model: the skipped sublayers and the tuned down-projections, when a target was reached."""

    pruned: list[int]
    tuned: dict[int, torch.Tensor]
    estimated_speedup: float
    pruning_time_s: float


def apply_snapshot(model: HookedTransformer, snapshot: Snapshot, originals: dict[int, torch.Tensor]) -> None:
    """Put ``snapshot`` on ``model`` (restoring everything else first)."""
    restore_dense(model, originals)
    for layer, weight in snapshot.tuned.items():
        model.blocks[layer].mlp.W_out.data.copy_(weight)
    set_skipped(model, snapshot.pruned)


# ----------------------------------------------------------------------------- the record of a run


@dataclass
class PruneResult:
    """One method's pruning run: the order it pruned in and a snapshot per target speed-up."""

    method: str
    order: list[int] = field(default_factory=list)
    snapshots: dict[float, Snapshot] = field(default_factory=dict)
    total_time_s: float = 0.0
    steps: list[dict] = field(default_factory=list)  # per step: pruned so far, time, estimate, callback metrics


class PruningClock:
    """Pruning wall time that leaves out the time spent in per-step callbacks (evaluation)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        """Seconds since the start, callbacks excluded."""
        return time.perf_counter() - self.started - self.excluded

    def call_excluded(self, fn: Callable[..., dict], *args: Any) -> dict:
        """Run ``fn`` and exclude its time."""
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.excluded += time.perf_counter() - start


def record_step(
    result: PruneResult, model: HookedTransformer, latency: LatencyModel, pruned: list[int], tuned: dict[int, torch.Tensor],
    clock: PruningClock, targets: Sequence[float], on_step: StepCallback | None,
) -> None:
    """Record the step (time, estimate) and a snapshot for every target just reached; at such a step
    also ``on_step``'s metrics of the pruned model (its time left out of the pruning time)."""
    speed, elapsed = latency.estimate(pruned), clock.elapsed()
    reached = [t for t in targets if t not in result.snapshots and speed >= t]
    metrics = clock.call_excluded(on_step, model) if on_step and reached else {}
    result.steps.append({"pruned": list(pruned), "time_s": elapsed, "estimate": speed, **metrics})
    for target in reached:
        result.snapshots[target] = Snapshot(list(pruned), {k: v.clone() for k, v in tuned.items()}, speed, elapsed)
