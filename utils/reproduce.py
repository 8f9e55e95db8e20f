"""Run the notebooks head-less and write the reference report.

    python -m utils.reproduce --scale default            # every notebook, then results/REPORT.md
    python -m utils.reproduce --scale smoke --only 00    # one notebook (name or number prefix)

Each notebook runs with papermill in a fresh kernel into a staging folder; only a run that
finishes replaces ``results/<notebook>/``, so a failed run never overwrites a good result. The
run stops at the first failing notebook and names it and the failing cell.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from utils.outputs import METRICS_FILE, REPO_ROOT, RESULTS_ROOT, load_metrics, replace_folder
from utils.scales import SCALES

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORT_PATH = RESULTS_ROOT / "REPORT.md"
README_PATH = REPO_ROOT / "README.md"
SUMMARY_START, SUMMARY_END = "<!-- results-summary:start -->", "<!-- results-summary:end -->"
# summary columns by how a claim's verdict begins (notebook 05 also says "within noise (...)")
VERDICT_COLUMNS = {"holds": "claims holding", "within noise": "within noise", "differs": "differing", "fails": "failing"}
VERSIONED_PACKAGES = ("torch", "transformer-lens", "sae-lens", "transformers", "numpy", "papermill")


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def notebooks(only: str | None = None) -> list[Path]:
    """The notebooks to run, in order; ``only`` picks those whose name starts with it."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    chosen = [p for p in found if only is None or p.stem.startswith(only)]
    if not chosen:
        names = ", ".join(p.stem for p in found)
        raise SystemExit(f"no notebook matches {only!r}; choose from: {names}")
    return chosen


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_notebook(
    notebook: Path, scale: str, results_root: Path = RESULTS_ROOT, parameters: dict | None = None
) -> dict:
    """Execute one notebook at ``scale``; on success move its results into place and return its metrics."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    final = results_root / notebook.stem
    staging = results_root / f".{notebook.stem}.running"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    started = time.time()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(staging / notebook.name),
            parameters={"scale": scale, "results_dir": str(staging), **(parameters or {})},
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise NotebookFailed(
            f"{notebook.name} failed in cell {err.cell_index} (execution {err.exec_count}): "
            f"{err.ename}: {err.evalue}. Previous results in {final} are untouched."
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not (staging / METRICS_FILE).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise NotebookFailed(f"{notebook.name} finished without writing {METRICS_FILE}")
    metrics = load_metrics(staging)
    metrics["run"] = {
        "scale": scale,
        "wall_time_s": round(time.time() - started, 1),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": package_versions(),
    }
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    replace_folder(staging, final)
    return metrics


def _markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "_none_"
    columns = list(pd.DataFrame(rows).columns)
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else "- none"


def notebook_section(folder: Path) -> str:
    """The REPORT.md section of one notebook's results folder."""
    m = load_metrics(folder)
    run = m.get("run", {})
    versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
    figures = "\n".join(f"![{f}]({folder.name}/{f})" for f in m.get("figures", []))
    return "\n\n".join(
        [
            f"## {folder.name}",
            f"Model: `{m.get('model')}` · scale: `{run.get('scale', m.get('scale'))}` · "
            f"wall time: {run.get('wall_time_s', '?')} s · finished {run.get('finished', '?')}",
            f"**Implemented**\n\n{_bullets(m.get('implemented', []))}",
            f"**Not implemented**\n\n{_bullets(m.get('not_implemented', []))}",
            f"**Deviations from the paper**\n\n{_bullets(m.get('deviations', []))}",
            f"**Paper vs here**\n\n{_markdown_table(m.get('paper_vs_here', []))}",
            f"**Figures**\n\n{figures}" if figures else "",
            f"Versions: {versions}",
        ]
    )


def result_folders(results_root: Path = RESULTS_ROOT) -> list[Path]:
    """Every results folder that holds a metrics.json, in notebook order."""
    return sorted(p.parent for p in results_root.glob(f"[0-9][0-9]_*/{METRICS_FILE}"))


def summary_table(results_root: Path = RESULTS_ROOT) -> str:
    """One row per notebook: scale, wall time and how many of its paper claims hold, differ or fail."""
    rows = []
    for folder in result_folders(results_root):
        m = load_metrics(folder)
        run = m.get("run", {})
        verdicts = [row.get("verdict") for row in m.get("paper_vs_here", [])]
        seconds = run.get("wall_time_s")
        rows.append(
            {
                "notebook": f"[{folder.name}](results/REPORT.md#{folder.name})",
                "scale": run.get("scale", m.get("scale", "?")),
                "wall time": "?" if seconds is None else f"{seconds / 60:.1f} min",
                **{column: sum(str(v).startswith(start) for v in verdicts) for start, column in VERDICT_COLUMNS.items()},
                "other verdicts": sum(not str(v).startswith(tuple(VERDICT_COLUMNS)) for v in verdicts),
            }
        )
    return _markdown_table(rows)


def write_report(results_root: Path = RESULTS_ROOT) -> Path:
    """Write results/REPORT.md from every results folder that holds a metrics.json."""
    header = (
        "# Sublayer Lab — reference results\n\n"
        "Generated by `python -m utils.reproduce` (`make reproduce`); do not edit by hand. Every number "
        "below was computed by the notebook's own run; the 'paper' column cites the papers.\n\n"
        + summary_table(results_root).replace("](results/REPORT.md#", "](#")
    )
    report = results_root / "REPORT.md"
    tmp = report.with_suffix(".tmp")
    tmp.write_text("\n\n".join([header, *(notebook_section(f) for f in result_folders(results_root))]) + "\n")
    tmp.replace(report)
    return report


def update_readme_summary(readme: Path = README_PATH, results_root: Path = RESULTS_ROOT) -> None:
    """Replace the README's block between the results-summary markers by the current summary table."""
    text = readme.read_text()
    start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks the markers {SUMMARY_START} ... {SUMMARY_END}; add them where the table goes")
    block = f"{SUMMARY_START}\n{summary_table(results_root)}\n{SUMMARY_END}"
    tmp = readme.with_suffix(".tmp")
    tmp.write_text(text[:start] + block + text[end + len(SUMMARY_END) :])
    tmp.replace(readme)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Run the notebooks with papermill and write results/REPORT.md.")
    parser.add_argument("--scale", choices=SCALES, default="default")
    parser.add_argument("--only", help="run only notebooks whose name starts with this (e.g. 01)")
    parser.add_argument("--device", help="device parameter passed to every notebook (paper scale)")
    args = parser.parse_args(argv)
    extra = {"device": args.device} if args.device else {}
    chosen = notebooks(args.only)
    bar = tqdm(chosen, desc="notebooks", unit="nb")
    for notebook in bar:
        bar.set_postfix_str(notebook.stem)
        try:
            metrics = run_notebook(notebook, args.scale, parameters=extra)
        except NotebookFailed as err:
            print(f"\nFAILED: {err}", file=sys.stderr)
            write_report()
            update_readme_summary()
            return 1
        tqdm.write(f"{notebook.stem}: {metrics['run']['wall_time_s']} s")
    print(f"report: {write_report()}")
    update_readme_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
