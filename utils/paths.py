"""Where downloaded and converted things are kept: one place that model and data loading both use."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SUBLAYER_LAB_CACHE"


def cache_dir() -> Path:
    """The folder for converted weights and data caches (``$SUBLAYER_LAB_CACHE`` overrides it)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sublayer-lab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
