"""Where a notebook's results go, and writing them atomically.

The committed reference results (``results/<notebook>/``) are written only by a reference run of
``python -m utils.reproduce --reference``, which moves a finished staging folder into place. Any
other run that names a reference folder as its ``results_dir`` (JupyterLab, papermill by hand)
writes to ``runs_root()/<scale>/<notebook>/`` instead, a git-ignored folder.

A run claims its results folder (``claim_results_folder``: a lock held until the process exits,
taken by ``apply_scale`` in a notebook's first code cell and again by ``save_results``), so a second
run into the same folder stops at once with ``FolderInUse`` naming the first (pid, start time).

Public names: ``save_results``, ``load_metrics``, ``results_folder``,
``claim_results_folder``, ``FolderInUse``, ``runs_root``, ``is_reference_folder``, ``RESULTS_ROOT``,
``REPO_ROOT``, ``RUNS_ENV``, ``METRICS_FILE``, ``UNSCALED``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from utils.files import (
    Busy,
    atomic_write,
    hold_lock,
    replace_folder,  # noqa: F401  (re-exported: utils.transcoders imports it from here)
)
from utils.paths import REPO_ROOT

__all__ = [
    "METRICS_FILE",
    "REPO_ROOT",
    "RESULTS_ROOT",
    "RUNS_ENV",
    "UNSCALED",
    "FolderInUse",
    "claim_results_folder",
    "is_reference_folder",
    "load_metrics",
    "results_folder",
    "runs_root",
    "save_results",
]

RESULTS_ROOT = REPO_ROOT / "results"
RUNS_ENV = "SUBLAYER_LAB_RESULTS"
METRICS_FILE = "metrics.json"
NOTEBOOK_NAME = re.compile(r"[0-9]{2}_\w+")
UNSCALED = "unscaled"  # the runs subfolder of metrics that state no scale


def runs_root() -> Path:
    """The git-ignored folder every non-reference run writes to (``$SUBLAYER_LAB_RESULTS`` overrides)."""
    return Path(os.environ.get(RUNS_ENV) or RESULTS_ROOT / "runs")


def is_reference_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a committed reference folder ``results/<NN_name>``."""
    resolved = Path(path).resolve()
    return (
        resolved.parent == RESULTS_ROOT.resolve()
        and NOTEBOOK_NAME.fullmatch(resolved.name) is not None
    )


def results_folder(results_dir: str | os.PathLike, scale: str = UNSCALED) -> Path:
    """The folder a run writes (created if missing): ``results_dir``, or the runs folder standing in for a reference one."""
    path = Path(results_dir)
    if is_reference_folder(path):
        path = runs_root() / scale / path.resolve().name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _jsonable(value.to_dict(orient="records"))
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        value = value.item()
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class FolderInUse(RuntimeError):
    """Another run is writing the same results folder; the message names it."""


def claim_results_folder(folder: str | os.PathLike) -> None:
    """Claim ``folder`` for this process until it exits; ``FolderInUse`` naming the other run if one holds it."""
    try:
        hold_lock(folder)
    except Busy as busy:
        raise FolderInUse(
            f"another run is writing {busy.target}: {busy.holder}. Two runs into one results folder "
            "would overwrite each other's files; wait for that run to finish (or shut its kernel down), "
            "or give this run another results_dir"
        ) from None


def save_results(
    results_dir: str | os.PathLike, metrics: Mapping[str, Any], figures: Mapping[str, Any]
) -> Path:
    """Write ``metrics.json`` and each matplotlib figure as ``<name>.png``, each atomically.

    The figures are written first and the metrics last, so a ``metrics.json`` always describes
    figures that exist. A committed reference folder is never written here: its run goes to
    ``runs_root()/<scale>/<notebook>/`` (see the module docstring). Returns the metrics path.
    """
    folder = results_folder(results_dir, str(metrics.get("scale", UNSCALED)))
    claim_results_folder(folder)
    if folder != Path(results_dir):
        print(
            f"results written to {folder} (the committed {results_dir} changes only by `make reproduce`)"
        )
    for name, figure in figures.items():
        atomic_write(
            folder / f"{name}.png",
            lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=110, bbox_inches="tight"),
        )
    payload = {**_jsonable(dict(metrics)), "figures": [f"{name}.png" for name in figures]}
    target = folder / METRICS_FILE
    atomic_write(target, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)))
    return target


def load_metrics(folder: str | os.PathLike) -> dict:
    """A results folder's metrics.json."""
    return json.loads((Path(folder) / METRICS_FILE).read_text())
