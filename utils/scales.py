"""Scale presets (smoke / default / paper) for a notebook's size parameters."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

SCALES = ("smoke", "default", "paper")


def apply_scale(namespace: MutableMapping[str, Any], presets: Mapping[str, Mapping[str, Any]]) -> dict:
    """Fill size parameters from ``presets[namespace["scale"]]`` and return them all.

    ``namespace`` is the notebook's ``globals()``: its ``parameters`` cell holds the ``default``
    preset's values. A parameter the caller changed from that value (papermill ``-p``) is kept;
    every other one takes the chosen scale's value. Keys missing from a preset use the default.
    """
    scale = namespace.get("scale")
    if scale not in SCALES or scale not in presets:
        raise ValueError(f"scale must be one of {list(presets)}, got {scale!r}")
    default = presets["default"]
    resolved = {}
    for key, default_value in default.items():
        if key not in namespace:
            raise KeyError(f"parameter {key!r} is missing from the notebook's parameters cell")
        current = namespace[key]
        value = presets[scale].get(key, default_value) if current == default_value else current
        namespace[key] = resolved[key] = value
    return resolved
