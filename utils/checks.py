"""Checks for the classroom exercises: a learner's function against the reference in ``utils``.

Each exercise module in ``utils.exercises`` builds a few inputs (tiny random tensors or the tiny
model) and calls :func:`check`. A correct answer prints one line; a wrong one raises
:class:`ExerciseFailed` whose message names the exercise, the input, what was expected and what
came back, never a traceback from deep inside a library.

Public names: ``check``, ``Case``, ``ExerciseFailed``, ``mismatch`` (why two answers differ, or
None), and the default tolerances ``ATOL``, ``RTOL``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ATOL", "RTOL", "Case", "ExerciseFailed", "check", "mismatch"]

ATOL, RTOL = 1e-5, 1e-4


class ExerciseFailed(AssertionError):
    """The learner's function gave a wrong answer; the message says for which input and how."""


@dataclass
class Case:
    """One input to an exercise: what it is (shown on failure), positional and keyword arguments."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def mismatch(expected: Any, got: Any, atol: float = ATOL, rtol: float = RTOL, where: str = "") -> str | None:
    """Why ``got`` differs from ``expected`` (shapes, values, types), or None if they match."""
    place = f" at {where}" if where else ""
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if not isinstance(got, (torch.Tensor, np.ndarray)):
            return f"expected a tensor{place}, got {type(got).__name__} ({_describe(got)})"
        e, g = torch.as_tensor(expected).detach().cpu(), torch.as_tensor(got).detach().cpu()
        if tuple(e.shape) != tuple(g.shape):
            return f"expected shape {tuple(e.shape)}{place}, got shape {tuple(g.shape)}"
        if e.dtype == torch.bool or g.dtype == torch.bool:
            wrong = (e.bool() != g.bool()).nonzero()
            if len(wrong):
                index = tuple(wrong[0].tolist())
                return f"{len(wrong)} of {e.numel()} entries differ{place}; first at index {index}: expected {e[index].item()}, got {g[index].item()}"
            return None
        e, g = e.double(), g.double()
        if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
            diff = (g - e).abs().nan_to_num(float("inf"))
            index = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), tuple(e.shape))) if e.dim() else ()
            return (
                f"values differ{place}: max |difference| {diff.max().item():.3g} (tolerance {atol:g} + {rtol:g}·|expected|); "
                f"at index {index}: expected {e[index].item():.6g}, got {g[index].item():.6g}"
            )
        return None
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or set(got) != set(expected):
            return f"expected a dict with keys {sorted(expected)}{place}, got {_describe(got)}"
        for key in expected:
            problem = mismatch(expected[key], got[key], atol, rtol, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} items{place}, got {_describe(got)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            problem = mismatch(e, g, atol, rtol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, (float, int)) and not isinstance(expected, bool):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (float, int, np.floating, np.integer)):
            return f"expected a number{place}, got {type(got).__name__} ({_describe(got)})"
        if not np.isclose(float(got), float(expected), atol=atol, rtol=rtol):
            return f"expected {expected:.6g}{place}, got {float(got):.6g}"
        return None
    return None if got == expected else f"expected {_describe(expected)}{place}, got {_describe(got)}"


def check(
    exercise: str,
    learner: Callable,
    reference: Callable,
    cases: Sequence[Case],
    atol: float = ATOL,
    rtol: float = RTOL,
) -> None:
    """Call ``learner`` and ``reference`` on every case; print one line if all agree, else raise."""
    for number, case in enumerate(cases, start=1):
        expected = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        try:
            got = learner(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            raise NotImplementedError(f"{exercise}: not written yet — replace the stub's `raise NotImplementedError` with your code") from None
        except Exception as err:  # the learner's bug, reported without the library's traceback
            raise ExerciseFailed(
                f"✗ {exercise}: on input {number} of {len(cases)} ({case.description}) your function raised "
                f"{type(err).__name__}: {err}"
            ) from None
        problem = mismatch(expected, got, atol, rtol)
        if problem:
            raise ExerciseFailed(f"✗ {exercise}: input {number} of {len(cases)} ({case.description}): {problem}")
    print(f"✓ {exercise}: matches the reference on all {len(cases)} inputs")
