"""Checks for the classroom exercises: a learner's function against the reference in ``utils``.

Each exercise module in ``utils.exercises`` builds a few inputs (tiny random tensors or the tiny
model, the documented edge cases among them) and calls :func:`check`. A correct answer prints one
line and hands the learner's function back, so the notebook's next experiment runs on it:

    knockout_mask = nb01.check_knockout_mask(knockout_mask)

A wrong one raises :class:`ExerciseFailed` whose message names the exercise, the input, what was
expected and what came back (dtype and shape are part of the contract), or, when the learner's code
raised, the learner's own line. While the learner's function runs, the reference is hidden under
its own name (calling it raises :class:`WriteItYourself`). ``skip("Exercise N.k")`` lets a stuck
learner go on: that exercise's check then hands back the reference instead (and says so); the
environment variable ``SUBLAYER_LAB_SKIP`` (``all`` or ``1.1,4.2``) does the same from outside.

Public names: ``check``, ``skip``, ``skipped``, ``Case``, ``ExerciseFailed``, ``WriteItYourself``,
``mismatch`` (why two answers differ, or None), ``SKIP_ENV`` and the tolerances ``ATOL``, ``RTOL``.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "ATOL",
    "RTOL",
    "SKIP_ENV",
    "Case",
    "ExerciseFailed",
    "WriteItYourself",
    "check",
    "mismatch",
    "skip",
    "skipped",
]

ATOL, RTOL = 1e-5, 1e-4
SKIP_ENV = "SUBLAYER_LAB_SKIP"  # "all" or exercise numbers "1.1,4.2": checks hand back the reference
EXERCISE_ID = re.compile(r"Exercise (\d+\.\d+)")
LIBRARY_DIRS = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
UTILS_DIR = str(Path(__file__).resolve().parent)
_skipped: set[str] = set()


class ExerciseFailed(AssertionError):
    """The learner's function gave a wrong answer; the message says for which input and how."""


class WriteItYourself(RuntimeError):
    """The learner's function called the reference it is meant to replace."""


@dataclass
class Case:
    """One input to an exercise: what it is (shown on failure), positional and keyword arguments."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _exercise_id(exercise: str) -> str:
    found = EXERCISE_ID.search(exercise)
    return found[1] if found else exercise


def skip(exercise: str) -> None:
    """Let the check of ``exercise`` ("Exercise 1.1" or "1.1") hand back the reference solution."""
    _skipped.add(_exercise_id(exercise))
    print(f"Exercise {_exercise_id(exercise)} will be skipped: the notebook goes on with the reference solution")


def skipped(exercise: str) -> bool:
    """Whether ``exercise`` was skipped by :func:`skip` or by the ``SUBLAYER_LAB_SKIP`` variable."""
    outside = {s.strip() for s in os.environ.get(SKIP_ENV, "").split(",") if s.strip()}
    number = _exercise_id(exercise)
    return number in _skipped or number in outside or "all" in outside


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tensor_mismatch(expected: Any, got: Any, atol: float, rtol: float, place: str) -> str | None:
    if not isinstance(got, (torch.Tensor, np.ndarray)):
        return f"expected a tensor{place}, got {type(got).__name__} ({_describe(got)})"
    e, g = torch.as_tensor(expected).detach().cpu(), torch.as_tensor(got).detach().cpu()
    if tuple(e.shape) != tuple(g.shape):
        return f"expected shape {tuple(e.shape)}{place}, got shape {tuple(g.shape)}"
    if e.dtype != g.dtype:
        return f"expected dtype {e.dtype}{place}, got {g.dtype} (the dtype is part of the contract)"
    if e.dtype == torch.bool:
        wrong = (e != g).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            return (f"{len(wrong)} of {e.numel()} entries differ{place}; first at index {index}: "
                    f"expected {e[index].item()}, got {g[index].item()}")
        return None
    e, g = e.double(), g.double()
    if torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
        return None
    diff = (g - e).abs().nan_to_num(float("inf"))
    index = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), tuple(e.shape))) if e.dim() else ()
    return (
        f"values differ{place}: max |difference| {diff.max().item():.3g} (tolerance {atol:g} + "
        f"{rtol:g}·|expected|); at index {index}: expected {e[index].item():.6g}, got {g[index].item():.6g}"
    )


def mismatch(expected: Any, got: Any, atol: float = ATOL, rtol: float = RTOL, where: str = "") -> str | None:
    """Why ``got`` differs from ``expected`` (shapes, dtypes, values, types), or None if they match."""
    place = f" at {where}" if where else ""
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        return _tensor_mismatch(expected, got, atol, rtol, place)
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping) or set(got) != set(expected):
            return f"expected a dict with keys {sorted(expected)}{place}, got {_describe(got)}"
        problems = (mismatch(expected[k], got[k], atol, rtol, f"{where}[{k!r}]") for k in expected)
        return next((p for p in problems if p), None)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} items{place}, got {_describe(got)}"
        problems = (mismatch(e, g, atol, rtol, f"{where}[{i}]") for i, (e, g) in enumerate(zip(expected, got, strict=True)))
        return next((p for p in problems if p), None)
    if isinstance(expected, (float, int)) and not isinstance(expected, bool):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (float, int, np.floating, np.integer)) or isinstance(got, bool):
            return f"expected a number{place}, got {type(got).__name__} ({_describe(got)})"
        if not np.isclose(float(got), float(expected), atol=atol, rtol=rtol):
            return f"expected {expected:.6g}{place}, got {float(got):.6g}"
        return None
    return None if got == expected else f"expected {_describe(expected)}{place}, got {_describe(got)}"


def _learner_line(err: BaseException) -> str:
    """Where in the learner's own code ``err`` was raised (the deepest frame outside libraries)."""
    frames = [
        f for f in traceback.extract_tb(err.__traceback__)
        if not str(Path(f.filename).resolve()).startswith((*LIBRARY_DIRS, UTILS_DIR))
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" at line {frame.lineno} of {Path(frame.filename).name} (in {frame.name}): {frame.line}"


def _owners(function: Callable) -> Iterator[tuple[Any, str, Any]]:
    """Every (module or class, name, stored value) by which loaded modules reach ``function``."""
    function = getattr(function, "__func__", function)  # a bound method: its function
    name = function.__name__
    for module in list(sys.modules.values()):
        if getattr(module, "__dict__", {}).get(name) is function:
            yield module, name, function
    owner_name = function.__qualname__.rpartition(".")[0]
    owner = getattr(sys.modules.get(function.__module__), owner_name, None) if owner_name else None
    stored = getattr(owner, "__dict__", {}).get(name)
    if stored is function or getattr(stored, "__func__", None) is function:  # plain, static or class method
        yield owner, name, stored


@contextmanager
def _hidden(exercise: str, functions: Sequence[Callable]) -> Iterator[None]:
    """Within the block, the reference ``functions`` raise WriteItYourself under their own names."""

    def refuse(*_: Any, **__: Any) -> None:
        raise WriteItYourself(f"{exercise}: write it yourself — the reference is hidden while your function runs")

    patched = [found for f in functions if hasattr(f, "__qualname__") for found in _owners(f)]
    try:
        for owner, name, _ in patched:
            setattr(owner, name, refuse)
        yield
    finally:
        for owner, name, stored in patched:
            setattr(owner, name, stored)


def _run_learner(exercise: str, learner: Callable, case: Case, number: int, total: int) -> Any:
    try:
        return learner(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
    except NotImplementedError:
        raise NotImplementedError(
            f"{exercise}: not written yet — replace the stub's `raise NotImplementedError` with your code "
            f"(or run `checks.skip(\"Exercise {_exercise_id(exercise)}\")` to go on with the reference)"
        ) from None
    except Exception as err:  # the learner's bug, reported at the learner's line, not the library's
        raise ExerciseFailed(
            f"✗ {exercise}: on input {number} of {total} ({case.description}) your function raised "
            f"{type(err).__name__}: {err}{_learner_line(err)}"
        ) from None


def check(
    exercise: str,
    learner: Callable,
    reference: Callable,
    cases: Sequence[Case],
    atol: float = ATOL,
    rtol: float = RTOL,
    hide: Sequence[Callable] | None = None,
    view: Callable[[Any], Any] | None = None,
) -> Callable:
    """Compare ``learner`` with ``reference`` on every case; print one line and return ``learner``, or raise.

    ``hide`` (default: ``reference``) are hidden under their names while the learner runs; ``view``
    maps both answers to what is compared. A skipped exercise returns ``reference`` unchecked.
    """
    if skipped(exercise):
        print(f"↷ {exercise}: skipped — the notebook goes on with the reference solution")
        return reference
    seen = view or (lambda answer: answer)
    for number, case in enumerate(cases, start=1):
        expected = seen(reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs)))
        with _hidden(exercise, [reference] if hide is None else hide):
            answer = _run_learner(exercise, learner, case, number, len(cases))
        got = seen(answer)
        problem = mismatch(expected, got, atol, rtol)
        if problem:
            raise ExerciseFailed(f"✗ {exercise}: input {number} of {len(cases)} ({case.description}): {problem}")
    print(f"✓ {exercise}: matches the reference on all {len(cases)} inputs")
    return learner
