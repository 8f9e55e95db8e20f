"""Scale presets (smoke / default / paper) for a notebook's parameters, checked before any work.

``apply_scale(globals(), PRESETS)`` is the first line of every notebook's setup cell. It fills the
parameters the caller did not set from the chosen scale, checks every parameter's type and range
(types from the ``default`` preset's values, else from the parameters cell's annotations), and at
``scale="paper"`` either checks that the network is there (``utils.online``) or, with
``dry_run=True``, swaps in offline stand-ins and the smallest sizes (the smoke preset, overridden by a
``dry_run`` preset where a notebook has one) while keeping every paper branch. Last, it claims the
run's results folder (``utils.outputs.claim_results_folder``), so a second run into the same folder
stops here, naming the first.

Which parameters the caller set (``given_parameters``): in a papermill run, every name papermill
injected, whatever its value (``-p model_name smollm2-135m`` at ``scale=paper`` keeps the embedded
model), read from its injected cell (first line ``# Parameters``) in the kernel's input history
``In``; an injected name the notebook does not have stops the run, naming the close matches. A
value that differs from the ``default`` preset's also counts as set (an edited parameters cell in
JupyterLab, a plain dict in tests). Without an injected cell that is the only sign, so there a
value edited back to its default cannot be told from an untouched one and takes the scale's value.

Public names: ``apply_scale``, ``given_parameters``, ``injected_names``, ``validate``,
``check_parameter``, ``dry_run_sizes``, ``ParameterError``, ``SCALES``, ``DRY_RUN``.
"""

from __future__ import annotations

import ast
import difflib
import types
import typing
from collections.abc import Mapping, MutableMapping
from typing import Any

from utils import online
from utils.outputs import claim_results_folder, results_folder

__all__ = [
    "DRY_RUN",
    "SCALES",
    "ParameterError",
    "apply_scale",
    "check_parameter",
    "dry_run_sizes",
    "given_parameters",
    "injected_names",
    "validate",
]

SCALES = ("smoke", "default", "paper")
DRY_RUN = "dry_run"  # optional preset of the sizes a paper-scale dry run uses (else smoke's)
Bounds = tuple[float | None, float | None]
# The first line of the cell papermill injects after the parameters cell: papermill.translators'
# PythonTranslator.codify(parameters, comment="Parameters") writes comment("Parameters") first.
INJECTED_HEADER = "# Parameters"
ALWAYS_KNOWN = ("scale", "dry_run", "results_dir")


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or value; the message names each one."""


def _preset_keys(presets: Mapping[str, Mapping[str, Any]], scale: str) -> None:
    """Every key a scale sets must have a default (the value its parameters cell holds)."""
    extra = sorted(set(presets[scale]) - set(presets["default"]))
    if extra:
        raise KeyError(
            f"PRESETS[{scale!r}] sets {extra}, which PRESETS['default'] lacks: add their default values"
        )


def dry_run_sizes(presets: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The sizes a dry run uses: the ``smoke`` preset, with the ``dry_run`` preset's values (smaller
    still, where a notebook has one) taking precedence."""
    return {**presets.get("smoke", {}), **presets.get(DRY_RUN, {})}


# ------------------------------------------------------------------- what the caller set
def _assigned(source: str) -> list[str]:
    """The names a cell's top-level statements assign (``x = ...`` or ``x: T = ...``), in order."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    names = []
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _injected_cell(namespace: Mapping[str, Any]) -> tuple[str, str] | None:
    """(papermill's injected cell, the cell run before it: the parameters cell) from IPython's input history ``In``; None outside papermill."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return None
    for index in range(len(history) - 1, 0, -1):
        source = history[index]
        if isinstance(source, str) and source.partition("\n")[0].strip() == INJECTED_HEADER:
            return source, str(history[index - 1])
    return None


def injected_names(namespace: Mapping[str, Any]) -> list[str] | None:
    """The parameter names papermill injected into this kernel (``-p name value``), or None when it injected none."""
    cell = _injected_cell(namespace)
    return None if cell is None else _assigned(cell[0])


def given_parameters(namespace: Mapping[str, Any], defaults: Mapping[str, Any]) -> set[str]:
    """The parameters the caller set: every name papermill injected, whatever its value, and every
    one of ``defaults`` whose value in ``namespace`` differs from it (see the module docstring)."""
    changed = {key for key, value in defaults.items() if key in namespace and namespace[key] != value}
    return changed | set(injected_names(namespace) or ())


def _check_injected_names(namespace: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """ParameterError when papermill injected a name the notebook's parameters cell does not have."""
    cell = _injected_cell(namespace)
    if cell is None:
        return
    injected, parameters_cell = cell
    known = {*_assigned(parameters_cell), *namespace.get("__annotations__", {}), *defaults, *ALWAYS_KNOWN}
    problems = []
    for name in _assigned(injected):
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            problems.append(f"unknown parameter {name!r}{hint}")
    if problems:
        raise ParameterError(
            "; ".join(problems) + f". This notebook's parameters are: {', '.join(sorted(known))}"
        )


def _resolve(
    namespace: MutableMapping[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    scale: str,
    dry_run: bool,
) -> dict:
    """Fill every preset key the caller did not set from the scale's preset (smoke sizes in a dry run)."""
    default = presets["default"]
    missing = [key for key in default if key not in namespace]
    if missing:
        raise KeyError(f"parameter {missing[0]!r} is missing from the notebook's parameters cell")
    given = given_parameters(namespace, default)
    rehearsal = dry_run_sizes(presets)
    resolved = {}
    for key, default_value in default.items():
        if key in given:
            value = namespace[key]
        elif dry_run and key in rehearsal and not online.is_source_parameter(key):
            value = rehearsal[key]
        else:
            value = presets[scale].get(key, default_value)
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
    if kind is str and isinstance(value, str) and not value.strip():
        return f"{name} must be non-empty" + (" (it holds only whitespace)" if value else "")
    if not _has_type(value, kind) or not _in_bounds(value, bounds):
        return f"{name} must be {_describe(kind, bounds)}, got {value!r}"
    return None


def validate(
    namespace: Mapping[str, Any],
    defaults: Mapping[str, Any],
    ranges: Mapping[str, Bounds] | None = None,
) -> None:
    """Check every parameter (the preset's keys and the annotated ones); raise one ParameterError naming all problems.

    The type comes from the default preset's value, else (no value, or None) from the parameters
    cell's annotation;
    ``ranges`` gives inclusive (low, high) bounds (None = open) where the count rule does not fit.
    """
    annotations = namespace.get("__annotations__", {})
    ranges = ranges or {}
    problems = []
    for name in [*defaults, *(a for a in annotations if a not in defaults)]:
        if name not in namespace:
            continue
        preset_kind = name in defaults and defaults[name] is not None  # None: "from the model", see the annotation
        kind = _type_of(defaults[name]) if preset_kind else annotations.get(name, Any)
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
    preset's values. A parameter the caller set (``given_parameters``: injected by papermill ``-p``,
    whatever its value, or changed from the default) is kept; every other one takes the chosen
    scale's value. An injected name the notebook lacks is an error naming the close matches. Then
    every parameter is checked (see ``validate``; ``ranges`` overrides bounds). At ``scale="paper"``
    the models and datasets the parameters name must be reachable (else one message lists them),
    unless ``dry_run=True``, which swaps them for offline stand-ins and uses ``dry_run_sizes`` where
    the caller set none. Last, the run's ``results_dir`` (when the namespace has one) is claimed.
    """
    _check_injected_names(namespace, presets.get("default", {}))
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
    if "results_dir" in namespace:  # a second run into the same folder stops here, before any work
        claim_results_folder(results_folder(namespace["results_dir"], scale))
    return resolved


def _paper_sources(namespace: MutableMapping[str, Any], resolved: dict, dry_run: bool) -> None:
    """Require the named local models installed, and the network for the named online models and
    datasets, or (dry run) swap in the online ones' stand-ins."""
    sources = {k: v for k, v in namespace.items() if online.is_source_parameter(k)}
    online.require_local_models(sources)
    if not dry_run:
        online.require_online(sources)
        return
    for key, value in sources.items():
        namespace[key] = online.dry_run_value(key, value)
        if key in resolved:
            resolved[key] = namespace[key]
