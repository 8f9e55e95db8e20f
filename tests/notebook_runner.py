"""Execute a notebook at smoke scale with papermill, the same way `make reproduce` does."""

from pathlib import Path

from utils.reproduce import notebooks, run_notebook


def run_smoke(prefix: str, results_root: Path, **parameters) -> dict:
    """Run the notebook whose name starts with ``prefix`` at smoke scale; return its metrics."""
    (notebook,) = notebooks(prefix)
    return run_notebook(notebook, "smoke", results_root=results_root, parameters=parameters)
