"""Scale presets (smoke / default / paper) for a notebook's parameters, checked before any work.

``apply_scale(globals(), PRESETS)`` is the first line of every notebook's setup cell. It fills the
parameters the caller did not change from the chosen scale, checks every parameter's type and range
(types from the ``default`` preset's values, else from the parameters cell's annotations), and at
``scale="paper"`` either checks that the network is there (``utils.online``) or, with
``dry_run=True``, swaps in offline stand-ins and the smallest sizes (the smoke preset, overridden by a
``dry_run`` preset where a notebook has one) while keeping every paper branch.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any

from utils import online

SCALES = ("smoke", "default", "paper")
DRY_RUN = "dry_run"  # optional preset of the sizes a paper-scale dry run uses (else smoke's)
Bounds = tuple[float | None, float | None]


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or value; the message names each one."""


def _preset_keys(presets: Mapping[str, Mapping[str, Any]], scale: str) -> None:
    """Every key a scale sets must have a default: that is how a caller's override is recognised."""
    extra = sorted(set(presets[scale]) - set(presets["default"]))
    if extra:
        raise KeyError(
            f"PRESETS[{scale!r}] sets {extra}, which PRESETS['default'] lacks: add their default values"
        )


def dry_run_sizes(presets: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The sizes a dry run uses: the ``smoke`` preset, with the ``dry_run`` preset's values (smaller
    still, where a notebook has one) taking precedence."""
    return {**presets.get("smoke", {}), **presets.get(DRY_RUN, {})}


def _resolve(
    namespace: MutableMapping[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    scale: str,
    dry_run: bool,
) -> dict:
    """Fill every preset key not changed by the caller from the scale's preset (smoke sizes in a dry run)."""
    default = presets["default"]
    rehearsal = dry_run_sizes(presets)
    resolved = {}
    for key, default_value in default.items():
        if key not in namespace:
            raise KeyError(f"parameter {key!r} is missing from the notebook's parameters cell")
        current = namespace[key]
        value = presets[scale].get(key, default_value) if current == default_value else current
        if (
            dry_run
            and current == default_value
            and key in rehearsal
            and not online.is_source_parameter(key)
        ):
            value = rehearsal[key]
        namespace[key] = resolved[key] = value
    return resolved


# --------------------------------------------------------------------------------- validation
def _type_of(value: Any) -> Any:
    """The annotation-like type of a preset value: ``int``, ``list[float]`` ..."""
    if isinstance(value, list):
        kinds = {_type_of(v) for v in value}
        return list[kinds.pop()] if len(kinds) == 1 else list
    return type(value)


def _type_name(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


def _has_type(value: Any, kind: Any) -> bool:
    """isinstance for the annotations a parameters cell uses (bool is not an int; an int is a float)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_has_type(v, args[0]) for v in value)
    if kind is Any or not isinstance(kind, type):
        return True
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _default_bounds(kind: Any, default: Any) -> Bounds | None:
    """Sizes are counts: an int (or list of ints) whose default is positive must be >= 1, other numbers >= 0."""
    numbers = [
        v
        for v in (default if isinstance(default, list) else [default])
        if isinstance(v, int | float)
    ]
    if not numbers or isinstance(default, bool):
        return (0, None) if kind in (int, float, list[int], list[float]) else None
    counts = all(isinstance(v, int) and v > 0 for v in numbers)
    return (1, None) if counts else (0, None)


def _describe(kind: Any, bounds: Bounds | None) -> str:
    """``"a positive int"``, ``"a list of non-negative float"``, ``"a float in [0, 1]"`` ..."""
    is_list = typing.get_origin(kind) is list and typing.get_args(kind)
    name = _type_name(typing.get_args(kind)[0] if is_list else kind)
    if bounds is None:
        name = f"non-empty {name}" if kind is str else name
    elif bounds[1] is None:
        sign = {1: "positive", 0: "non-negative"}.get(bounds[0])
        name = f"{sign} {name}" if sign else f"{name} >= {bounds[0]}"
    else:
        name = f"{name} in [{bounds[0]}, {bounds[1]}]"
    return f"a list of {name}" if is_list else f"a {name}"


def _in_bounds(value: Any, bounds: Bounds | None) -> bool:
    low, high = bounds or (None, None)
    numbers = value if isinstance(value, list) else [value]
    return all(
        (low is None or v >= low) and (high is None or v <= high)
        for v in numbers
        if isinstance(v, int | float)
    )


def check_parameter(name: str, value: Any, kind: Any, bounds: Bounds | None = None) -> str | None:
    """The problem with one parameter's value (``"n_facts must be a positive int, got 'abc'"``), or None."""
    if kind is str and value == "":
        return f"{name} must be non-empty"
    if not _has_type(value, kind) or not _in_bounds(value, bounds):
        return f"{name} must be {_describe(kind, bounds)}, got {value!r}"
    return None


def validate(
    namespace: Mapping[str, Any],
    defaults: Mapping[str, Any],
    ranges: Mapping[str, Bounds] | None = None,
) -> None:
    """Check every parameter (the preset's keys and the annotated ones); raise one ParameterError naming all problems.

    The type comes from the default preset's value, else from the parameters cell's annotation;
    ``ranges`` gives inclusive (low, high) bounds (None = open) where the count rule does not fit.
    """
    annotations = namespace.get("__annotations__", {})
    ranges = ranges or {}
    problems = []
    for name in [*defaults, *(a for a in annotations if a not in defaults)]:
        if name not in namespace:
            continue
        kind = _type_of(defaults[name]) if name in defaults else annotations[name]
        bounds = ranges.get(name) or _default_bounds(kind, defaults.get(name))
        if (problem := check_parameter(name, namespace[name], kind, bounds)) is not None:
            problems.append(problem)
    if problems:
        raise ParameterError("; ".join(problems))


# ------------------------------------------------------------------------------------- scales
def apply_scale(
    namespace: MutableMapping[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    ranges: Mapping[str, Bounds] | None = None,
) -> dict:
    """Fill parameters from ``presets[namespace["scale"]]``, check them all, and return the preset's keys.

    ``namespace`` is the notebook's ``globals()``: its ``parameters`` cell holds the ``default``
    preset's values. A parameter the caller changed from that value (papermill ``-p``) is kept;
    every other one takes the chosen scale's value. Then every parameter is checked (see
    ``validate``; ``ranges`` overrides bounds). At ``scale="paper"`` the models and datasets the
    parameters name must be reachable (else one message lists them), unless ``dry_run=True``, which
    swaps them for offline stand-ins and uses ``dry_run_sizes`` where the caller set none.
    """
    scale = namespace.get("scale")
    if scale not in SCALES or scale not in presets:
        raise ParameterError(f"scale must be one of {list(presets)}, got {scale!r}")
    dry_run = namespace.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ParameterError(f"dry_run must be a bool, got {dry_run!r}")
    if dry_run and scale != "paper":
        raise ParameterError(f"dry_run=True rehearses scale='paper'; got scale={scale!r}")
    _preset_keys(presets, scale)
    if dry_run and DRY_RUN in presets:
        _preset_keys(presets, DRY_RUN)
    defaults = presets["default"]
    resolved = _resolve(namespace, presets, scale, dry_run)
    validate(namespace, defaults, ranges)  # before any model or data is loaded
    if scale == "paper":
        _paper_sources(namespace, resolved, dry_run)
    return resolved


def _paper_sources(namespace: MutableMapping[str, Any], resolved: dict, dry_run: bool) -> None:
    """Require the network for the named models/datasets, or (dry run) swap in their stand-ins."""
    sources = {k: v for k, v in namespace.items() if online.is_source_parameter(k)}
    if not dry_run:
        online.require_online(sources)
        return
    for key, value in sources.items():
        namespace[key] = online.dry_run_value(key, value)
        if key in resolved:
            resolved[key] = namespace[key]
