"""Execute notebooks with papermill, the same way `make reproduce` does."""

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from utils.reproduce import notebooks, run_notebook


def run_smoke(prefix: str, results_root: Path, **parameters) -> dict:
    """Run the notebook whose name starts with ``prefix`` at smoke scale; return its metrics."""
    (notebook,) = notebooks(prefix)
    return run_notebook(notebook, "smoke", results_root=results_root, parameters=parameters)


def run_dry(prefix: str, results_root: Path, threads: int | None = None) -> dict:
    """Run the notebook whose name starts with ``prefix`` at paper scale with ``dry_run=True``
    (its kernel limited to ``threads`` OpenMP threads if given)."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it
    (notebook,) = notebooks(prefix)
    return run_notebook(notebook, "paper", results_root=results_root, parameters={"dry_run": True})


def run_dry_all(prefixes: list[str], results_root: Path, workers: int) -> dict[str, dict | Exception]:
    """``run_dry`` for every prefix, ``workers`` at a time (spawned processes, one thread each so
    they do not oversubscribe the cores); each its metrics or its error."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {p: pool.submit(run_dry, p, results_root, 1) for p in prefixes}
        outcomes: dict[str, dict | Exception] = {}
        for prefix, future in futures.items():
            try:
                outcomes[prefix] = future.result()
            except Exception as err:  # reported by the test of that notebook
                outcomes[prefix] = err
    return outcomes
