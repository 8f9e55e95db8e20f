"""Where a notebook's results go, and writing them atomically.

The committed reference results (``results/<notebook>/``) are written only by a reference run of
``python -m utils.reproduce --reference``, which moves a finished staging folder into place. Any
other run that names a reference folder as its ``results_dir`` (JupyterLab, papermill by hand)
writes to ``runs_root()/<scale>/<notebook>/`` instead, a git-ignored folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_ROOT = REPO_ROOT / "results"
RUNS_ENV = "SUBLAYER_LAB_RESULTS"
METRICS_FILE = "metrics.json"
PAPER_VS_HERE_COLUMNS = ["claim", "paper", "here", "verdict"]
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


def paper_vs_here(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The closing 'paper vs here' table: one row per claim with paper, here and verdict."""
    pd.set_option("display.max_colwidth", None)  # show whole claims, not 50 characters of each
    table = pd.DataFrame(list(rows))
    missing = [c for c in PAPER_VS_HERE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"paper-vs-here rows lack {missing}")
    return table[PAPER_VS_HERE_COLUMNS]


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # as an ordinary file, not mkstemp's owner-only mode
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) in one step, through a uniquely named temporary file."""
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_results(
    results_dir: str | os.PathLike, metrics: Mapping[str, Any], figures: Mapping[str, Any]
) -> Path:
    """Write ``metrics.json`` and each matplotlib figure as ``<name>.png``, each atomically.

    The figures are written first and the metrics last, so a ``metrics.json`` always describes
    figures that exist. A committed reference folder is never written here: its run goes to
    ``runs_root()/<scale>/<notebook>/`` (see the module docstring). Returns the metrics path.
    """
    folder = results_folder(results_dir, str(metrics.get("scale", UNSCALED)))
    if folder != Path(results_dir):
        print(
            f"results written to {folder} (the committed {results_dir} changes only by `make reproduce`)"
        )
    for name, figure in figures.items():
        _atomic_write(
            folder / f"{name}.png",
            lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=110, bbox_inches="tight"),
        )
    payload = {**_jsonable(dict(metrics)), "figures": [f"{name}.png" for name in figures]}
    target = folder / METRICS_FILE
    _atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))
    return target


def load_metrics(folder: str | os.PathLike) -> dict:
    """A results folder's metrics.json."""
    return json.loads((Path(folder) / METRICS_FILE).read_text())


def replace_folder(new: Path, final: Path) -> None:
    """Move folder ``new`` to ``final``, replacing it; the old one is deleted only once ``new`` is in place."""
    backup = final.with_name(final.name + ".old")
    if backup.exists():
        shutil.rmtree(backup)
    if final.exists():
        os.replace(final, backup)
    os.replace(new, final)
    if backup.exists():
        shutil.rmtree(backup)
