"""Where a long recording ran, for the provenance written beside what it made (``data/pruning/runs.json``
by ``scripts/record_baseline_orders.py``, ``data/transcoders/`` by ``scripts/train_transcoders.py``).

Public names: ``machine``, ``git``, ``now_utc``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["git", "machine", "now_utc"]


def now_utc() -> str:
    """The time now, as ``2026-12-06T20:45:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git(*args: str) -> str:
    """The output of ``git args`` run in this repository ('' when git or the repository is absent)."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent)
    except OSError:
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    """This machine and process: processor (its model name where /proc/cpuinfo gives one), core
    count, GPU, torch version and threads, and the repository's commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "git_commit": git("rev-parse", "HEAD") or None}
