"""Notebook 05's exercise checks pass the reference and fail wrong steps with a message naming the input."""

from functools import partial

import pytest

from utils.checks import ExerciseFailed
from utils.exercises import nb05
from utils.ode_blocks import ode_step


def test_references_pass(capsys):
    nb05.check_parallel_step(partial(ode_step, "parallel"))
    nb05.check_strang_step(partial(ode_step, "strang"))
    assert capsys.readouterr().out.count("✓") == 4


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda f, x, t, h: x + f.both(x, t), "input 1 of 3"),  # forgot the step size
        (lambda f, x, t, h: x + h * f.attn(x, t), "input 1 of 3"),  # attention only
        (
            lambda f, x, t, h: x + h * f.both(x, t + 1),
            "time-dependent transformer field",
        ),  # wrong time
    ],
)
def test_wrong_parallel_steps_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        nb05.check_parallel_step(wrong)


def strang_with(mlp_time: float = 0.5, attn_time: float = 0.5, mlp_weight: float = 0.5):
    """A Strang step with configurable stage times and MLP half-step weight (0.5 is right)."""

    def step(f, x, t, h):
        y = x + mlp_weight * h * f.mlp(x, t)
        z = y + h * f.attn(y, t + attn_time)
        return z + mlp_weight * h * f.mlp(z, t + mlp_time)

    return step


@pytest.mark.parametrize(
    "wrong, message",
    [
        (strang_with(mlp_weight=1.0), "input 1 of 3"),  # full MLP steps: a different ODE
        (
            strang_with(attn_time=0.0),
            "time-dependent transformer field",
        ),  # attention at the wrong time
        (partial(ode_step, "sequential"), "input 1 of 3"),  # Lie-Trotter instead of Strang
    ],
)
def test_wrong_strang_steps_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        nb05.check_strang_step(wrong)


def test_an_inconsistent_step_fails_the_order_check():
    doubled_mlp = strang_with(mlp_weight=1.0)
    assert nb05.observed_order(doubled_mlp) < 0.25  # it converges to another ODE: no order at all
    assert abs(nb05.observed_order(partial(ode_step, "strang")) - 1.0) < nb05.ORDER_TOLERANCE


def _midpoint(field, x, t, h):
    """The explicit midpoint method: the same as Heun on a linear field, not on a time-dependent one."""
    return x + h * field.both(x + (h / 2) * field.both(x, t), t + 0.5)


def test_rk2_passes_heun_and_fails_the_midpoint_method(capsys):
    nb05.check_rk2_step(partial(ode_step, "rk2"))
    assert "✓ Exercise 5.3 rk2_step (order of convergence)" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="Exercise 5.3 rk2_step: input 3 of 3 \\(time-dependent"):
        nb05.check_rk2_step(_midpoint)
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb05.check_rk2_step(lambda field, x, t, h: ode_step("rk2", field, x, t, h))
