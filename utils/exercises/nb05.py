"""Checks for notebook 05's exercises: one step of the parallel, the Strang and the RK2 scheme.

Each check compares the learner's ``step(field, x, t, h)`` with ``utils.ode_blocks.ode_step`` on a
linear split field and on a small time-conditioned transformer field, then integrates the linear
ODE ``dx/dt = (A + B) x`` with 8 to 64 steps and compares the observed order of convergence.

Public names: ``check_parallel_step`` (exercise 5.1), ``check_strang_step`` (exercise 5.2),
``check_rk2_step`` (exercise 5.3), and ``observed_order`` (the order a step function shows on the linear test ODE).
"""

from __future__ import annotations

from functools import partial

import torch

from utils.checks import Case, check
from utils.ode_blocks import (
    ODEConfig,
    SplitField,
    Step,
    TimeConditioned,
    TimeEmbedding,
    TransformerField,
    ode_step,
    order_of,
    random_linear_field,
    step_errors,
)

__all__ = ["check_parallel_step", "check_rk2_step", "check_strang_step", "observed_order"]

ORDER_STEPS = (8, 16, 32, 64)
ORDER_TOLERANCE = 0.25  # observed orders within this of the reference's


def _transformer_field(kind: str, seed: int = 0) -> SplitField:
    """A tiny field of ``kind``'s layout that also depends on time (random time embedding)."""
    torch.manual_seed(seed)
    cfg = ODEConfig(d_model=8, n_heads=2, d_mlp=16, n_layers=2, kind=kind, share=2)
    time = TimeEmbedding(cfg.n_layers, cfg.d_model)
    with torch.no_grad():
        time.table.normal_()
    return TimeConditioned(TransformerField(cfg).eval(), time)


def _cases(kind: str) -> list[Case]:
    """States, times and step sizes on which the learner's step must match the reference."""
    g = torch.Generator().manual_seed(0)
    linear = random_linear_field(dim=4, seed=3)
    return [
        Case(
            "linear field, x [3, 4], t=0, h=0.1",
            (linear, torch.randn(3, 4, generator=g, dtype=torch.float64), 0.0, 0.1),
        ),
        Case(
            "linear field, x [1, 4], t=2, h=1",
            (linear, torch.randn(1, 4, generator=g, dtype=torch.float64), 2.0, 1.0),
        ),
        Case(
            "time-dependent transformer field, x [2, 5, 8], t=0.5, h=0.7",
            (_transformer_field(kind), torch.randn(2, 5, 8, generator=g), 0.5, 0.7),
        ),
    ]


def observed_order(step: Step) -> float:
    """The order ``step`` shows on the linear test ODE (float64, 8 to 64 steps to t = 1)."""
    field = random_linear_field(dim=4, seed=1)
    errors = step_errors(step, field, torch.ones(1, 4, dtype=torch.float64), steps=ORDER_STEPS)
    return order_of(errors)


def _check_scheme(exercise: str, kind: str, learner: Step) -> Step:
    """Values on every case, then the observed order of convergence; the step the notebook goes on with."""
    reference = partial(ode_step, kind)
    with torch.no_grad():
        chosen = check(exercise, learner, reference, _cases(kind), hide=[ode_step])
        check(
            f"{exercise} (order of convergence)",
            lambda: observed_order(learner),
            lambda: observed_order(reference),
            [Case(f"observed order on dx/dt = (A + B) x with {ORDER_STEPS} steps to t = 1")],
            atol=ORDER_TOLERANCE,
            rtol=0.0,
            hide=[ode_step],
        )
    return chosen


def check_parallel_step(parallel_step: Step) -> Step:
    """Exercise 5.1: ``parallel_step(field, x, t, h)`` is one Euler step on the summed field."""
    return _check_scheme("Exercise 5.1 parallel_step", "parallel", parallel_step)


def check_strang_step(strang_step: Step) -> Step:
    """Exercise 5.2: ``strang_step(field, x, t, h)`` is half an MLP step, an attention step, half an MLP step."""
    return _check_scheme("Exercise 5.2 strang_step", "strang", strang_step)


def check_rk2_step(rk2_step: Step) -> Step:
    """Exercise 5.3: ``rk2_step(field, x, t, h)`` is one step of Heun's method on the summed field."""
    return _check_scheme("Exercise 5.3 rk2_step", "rk2", rk2_step)
