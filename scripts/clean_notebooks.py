"""Strip outputs from notebooks and set the metadata JupyterLab writes for the project kernel.

Run it on a notebook before committing it::

    .venv/bin/python scripts/clean_notebooks.py notebooks/01_dissecting_recall.ipynb
    .venv/bin/python scripts/clean_notebooks.py --check notebooks/*.ipynb   # exit 1 if any would change

The file is written exactly as the Jupyter server saves it (``nbformat.write``), with the kernelspec
``make env`` registers and the ``language_info`` the project's kernel reports, so opening the
notebook in JupyterLab and closing it leaves ``git status`` clean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

# What `make env` registers (`ipykernel install --name python3 --display-name ...`); tests compare.
KERNELSPEC = {"display_name": "Python 3 (sublayer-lab)", "language": "python", "name": "python3"}
# JupyterLab settings for an offline classroom: no news or update checks (they need the network and
# open a pop-up over the first screen of every notebook).
LAB_SETTINGS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
# Cell metadata that records a run (papermill, JupyterLab's view state), never the notebook's content.
RUN_METADATA = ("execution", "papermill", "ExecuteTime", "collapsed", "scrolled")


def language_info() -> dict:
    """The ``language_info`` the project's kernel (ipykernel on this interpreter) reports to JupyterLab."""
    from ipykernel.ipkernel import IPythonKernel

    return dict(IPythonKernel.language_info)


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts or run metadata, with the project kernel's metadata."""
    for cell in nb.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": language_info()})
    return nb


def serialise(nb: nbformat.NotebookNode) -> str:
    """The notebook's text exactly as the Jupyter server saves it (nbformat's JSON and final newline)."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def clean_file(path: Path, check: bool = False) -> bool:
    """Clean one notebook file in place (or only compare when ``check``); True if it was not clean."""
    before = path.read_text(encoding="utf-8")
    after = serialise(clean(nbformat.reads(before, as_version=4)))
    if after != before and not check:
        path.write_text(after, encoding="utf-8")
    return after != before


def write_lab_settings(prefix: Path) -> Path:
    """Write JupyterLab's settings overrides for the environment at ``prefix`` (called by ``make env``)."""
    target = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(LAB_SETTINGS, indent=1) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """Clean the notebooks named on the command line; with --check, report and exit 1 if any is unclean."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--lab-settings", type=Path, metavar="PREFIX", help="only write JupyterLab's settings into this environment")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not clean")
    args = parser.parse_args(argv)
    if args.lab_settings:
        print(f"wrote {write_lab_settings(args.lab_settings)}")
        return 0
    unclean = [path for path in args.notebooks if clean_file(path, check=args.check)]
    for path in unclean:
        print(f"{path}: {'not clean (run scripts/clean_notebooks.py on it)' if args.check else 'cleaned'}")
    return 1 if (args.check and unclean) else 0


if __name__ == "__main__":
    sys.exit(main())
