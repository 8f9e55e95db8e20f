"""Where things are: the repository, and the cache folder that model and data loading both use.

Public names: ``REPO_ROOT``, ``CACHE_ENV``, ``cache_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "REPO_ROOT", "cache_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "SUBLAYER_LAB_CACHE"


def cache_dir() -> Path:
    """The folder for converted weights and data caches (``$SUBLAYER_LAB_CACHE`` overrides it)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sublayer-lab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
