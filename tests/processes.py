"""Helpers for tests that race two real processes against each other."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from utils.paths import REPO_ROOT


def start(code: str, **env: str) -> subprocess.Popen:
    """Run ``code`` in a new Python process (one thread, offline, ``env`` added), its output captured."""
    environment = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)} | env
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``path`` exists; fail with the process's output if it ends or the time runs out first."""
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None or time.time() > deadline:
            out, err = process.communicate(timeout=60) if process.poll() is not None else ("", "")
            raise AssertionError(f"{path} never appeared (exit {process.poll()}):\n{out}\n{err[-3000:]}")
        time.sleep(0.1)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    """Wait for the process; its (stdout, stderr), after asserting it succeeded."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}:\n{out}\n{err[-3000:]}"
    return out, err
