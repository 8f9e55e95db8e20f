"""Run the notebooks head-less; a reference run also writes the committed results and report.

    python -m utils.reproduce --scale default --reference             # every notebook: results/, REPORT.md, README
    python -m utils.reproduce --scale default --only 01 --reference   # one notebook's reference results
    python -m utils.reproduce --scale smoke --only 00                 # a trial run: results/runs/smoke/00_.../

Each notebook runs with papermill in a fresh kernel into a staging folder; only a run that
finishes replaces its results folder, so a failed run never overwrites a good result. Only a
``--reference`` run (default scale) writes the committed ``results/<notebook>/``, ``results/REPORT.md``
and README's summary table; every other run writes to the git-ignored ``results/runs/<scale>/``
(``--results-root`` or ``$SUBLAYER_LAB_RESULTS`` moves it). A failing notebook is named with
its failing cell as numbered in the committed notebook, its executed copy is kept under
``results/runs/failed/``, and the other notebooks still run (the exit status is 1 if any failed).
Each results folder is locked while a run writes it: a second run into the same folder (another
``utils.reproduce`` on the same results root) stops at once, naming the first (pid, start time).

Public names: ``main``, ``run_notebook``, ``notebooks``, ``NotebookFailed``, ``write_report``,
``summary_table``, ``notebook_section``, ``result_folders``, ``update_readme_summary``,
``record_runtime``, ``record_measured_runtime``, ``runtime_text``, ``write_runtime_line``,
``machine_kind``, ``package_versions``, ``failing_cell``, ``keep_failed``, ``page_name``, ``quiet``,
``busy_text``, ``takes_embedded_model``, ``NOTEBOOKS_DIR``, ``REFERENCE_SCALE``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import papermill
import torch
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

from utils.files import Busy, file_lock, replace_folder, write_text_atomic
from utils.online import EMBEDDED_NAME
from utils.outputs import METRICS_FILE, REPO_ROOT, RESULTS_ROOT, RUNS_ENV, load_metrics, runs_root
from utils.pages import notebook_title, write_html_page
from utils.replication import claim_model_section, model_root
from utils.scales import SCALES
from utils.tables import markdown_table
from utils.verdicts import PASSES, WORDS, count_words, summary_sentences

__all__ = [
    "NOTEBOOKS_DIR",
    "REFERENCE_SCALE",
    "NotebookFailed",
    "busy_text",
    "failing_cell",
    "keep_failed",
    "machine_kind",
    "main",
    "notebook_section",
    "notebooks",
    "package_versions",
    "page_name",
    "quiet",
    "record_measured_runtime",
    "record_runtime",
    "result_folders",
    "run_notebook",
    "runtime_text",
    "summary_table",
    "takes_embedded_model",
    "update_readme_summary",
    "write_report",
    "write_runtime_line",
]

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
README_PATH = REPO_ROOT / "README.md"
REFERENCE_SCALE = "default"
FAILED_FOLDER = "failed"
INJECTED_TAG = "injected-parameters"  # papermill's cell of parameter overrides
ERROR_TAG = "papermill-error-cell-tag"  # papermill's notes around a failure
RUNTIMES_PATH = RESULTS_ROOT / "runtimes.json"
BUSY_LOAD_PER_CORE = (
    1.5  # the run's own load is about 1 per core; more means other work shared the CPU
)
RUNTIME_START, RUNTIME_END = "<!-- runtime:start -->", "<!-- runtime:end -->"
SUMMARY_START, SUMMARY_END = "<!-- results-summary:start -->", "<!-- results-summary:end -->"
VERSIONED_PACKAGES = ("torch", "transformer-lens", "sae-lens", "transformers", "numpy", "papermill")


def page_name(stem: str) -> str:
    """The file name of a notebook's executed HTML page inside its results folder."""
    return f"{stem}.html"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


def takes_embedded_model(notebook: Path) -> bool:
    """Whether a notebook runs on the embedded model by default (its ``model_name`` parameter), so
    that a second model can replace it; notebook 05 trains its own models and does not."""
    parameters = papermill.inspect_notebook(str(notebook))
    return parameters.get("model_name", {}).get("default", "").strip("\"'") == EMBEDDED_NAME


def notebooks(only: str | None = None) -> list[Path]:
    """The notebooks to run, in order; ``only`` is comma-separated name prefixes, each naming one notebook."""
    found = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only is None:
        return found
    names = ", ".join(p.stem for p in found)
    patterns = [pattern.strip() for pattern in only.split(",")]
    chosen = []
    for pattern in patterns:
        matches = [p for p in found if pattern and p.stem.startswith(pattern)]
        if len(matches) != 1:
            problem = (
                "is empty"
                if not pattern
                else ("matches no notebook" if not matches else f"matches {len(matches)} notebooks")
            )
            raise SystemExit(
                f"--only {pattern!r} {problem}; give one notebook's number or name prefix (e.g. 01), comma-separated for several: {names}"
            )
        chosen += [m for m in matches if m not in chosen]
    return sorted(chosen)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def failing_cell(executed: Path, cell_index: int) -> str:
    """The failing cell as numbered in the committed notebook (papermill's added cells skipped), with its first line."""
    cells = [
        c
        for c in nbformat.read(executed, as_version=4).cells
        if ERROR_TAG not in c.metadata.get("tags", [])
    ]
    if INJECTED_TAG in cells[cell_index].metadata.get("tags", []):
        return "the injected parameters (check the -p values)"
    injected = sum(INJECTED_TAG in c.metadata.get("tags", []) for c in cells[:cell_index])
    first_line = next(
        (line.strip() for line in cells[cell_index].source.splitlines() if line.strip()), ""
    )
    return f"cell {cell_index + 1 - injected} of {len(cells) - injected} (`{first_line}`)"


def keep_failed(executed: Path, failed_root: Path) -> Path | None:
    """Move a failed run's executed notebook to ``failed_root/<notebook>-<time>.ipynb``; None if it has none."""
    if not executed.is_file():
        return None
    failed_root.mkdir(parents=True, exist_ok=True)
    kept = failed_root / f"{executed.stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}.ipynb"
    shutil.move(executed, kept)
    return kept


def _what_failed(err: Exception, executed: Path | None) -> str:
    """Where and how a run failed: the committed notebook's cell for a cell error, else the error itself."""
    if isinstance(err, PapermillExecutionError) and executed is not None:
        return f"failed in {failing_cell(executed, err.cell_index)}: {err.ename}: {err.evalue}"
    return f"failed: {type(err).__name__}: {err}"


def run_notebook(
    notebook: Path,
    scale: str,
    results_root: Path | None = None,
    parameters: dict | None = None,
    failed_root: Path | None = None,
    page: bool = False,
) -> dict:
    """Execute one notebook at ``scale``; on success move its results to ``results_root/<notebook>`` and return its metrics.

    ``results_root`` defaults to the git-ignored ``runs_root()/<scale>``; only a reference run passes
    ``RESULTS_ROOT``. A failed run keeps its executed notebook in ``failed_root`` (default
    ``runs_root()/failed``) and leaves the previous results alone; an interrupted one removes its
    staging folder. ``page`` also writes the executed notebook as ``<notebook>.html`` beside its results
    (a page that cannot be written fails the run). While it runs, ``results_root/<notebook>`` is
    locked: a second run into it fails at once, naming this one.
    """
    results_root = runs_root() / scale if results_root is None else results_root
    failed_root = runs_root() / FAILED_FOLDER if failed_root is None else failed_root
    final = results_root / notebook.stem
    with ExitStack() as lock:
        try:
            lock.enter_context(file_lock(final, wait=False))
        except Busy as busy:
            raise NotebookFailed(
                f"{notebook.name} not run: another run is writing {final} ({busy.holder}). Wait for it "
                f"to finish, or give this one another results folder (--results-root). Previous results "
                f"in {final} are untouched."
            ) from None
        return _run_locked(notebook, scale, final, parameters, failed_root, page)


def _run_locked(
    notebook: Path, scale: str, final: Path, parameters: dict | None, failed_root: Path, page: bool
) -> dict:
    """``run_notebook``'s work, once it holds the lock of ``final``."""
    staging = final.with_name(f".{final.name}.running")
    executed = staging / notebook.name
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    started = time.time()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters={"scale": scale, "results_dir": str(staging), **(parameters or {})},
            cwd=str(notebook.parent),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )
        if not (staging / METRICS_FILE).is_file():
            raise FileNotFoundError(f"the notebook finished without writing {METRICS_FILE}")
        if page:
            write_html_page(executed, staging / page_name(notebook.stem))
    except Exception as err:  # a cell raised, the kernel died, or no metrics: keep the evidence
        kept = keep_failed(executed, failed_root)
        shutil.rmtree(staging, ignore_errors=True)
        evidence = (
            f"The executed notebook is kept in {kept}."
            if kept
            else "No executed notebook was written."
        )
        raise NotebookFailed(
            f"{notebook.name} {_what_failed(err, kept)}. {evidence} Previous results in {final} are untouched."
        ) from None
    except BaseException:  # interrupted: SIGINT, or SIGTERM through the handler main() installs
        shutil.rmtree(staging, ignore_errors=True)
        raise
    metrics = load_metrics(staging)
    metrics["run"] = {
        "scale": scale,
        "wall_time_s": round(time.time() - started, 1),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_5min": round(os.getloadavg()[1], 1),
        "cpu_cores": os.cpu_count(),
        "versions": package_versions(),
    }
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    replace_folder(staging, final)
    return metrics


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items) if items else "- none"


def notebook_section(folder: Path) -> str:
    """The REPORT.md section of one notebook's results folder."""
    m = load_metrics(folder)
    run = m.get("run", {})
    versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
    figures = "\n".join(f"![{f}]({folder.name}/{f})" for f in m.get("figures", []))
    page = folder / page_name(folder.name)
    page_link = (
        f"The executed notebook, with every output: [{page.name}]({folder.name}/{page.name})"
        if page.is_file()
        else ""
    )
    parts = [
        f"## {folder.name}",
        f"Model: `{m.get('model')}` · scale: `{run.get('scale', m.get('scale'))}` · "
        f"wall time: {run.get('wall_time_s', '?')} s · finished {run.get('finished', '?')}",
        page_link,
        f"**Implemented**\n\n{_bullets(m.get('implemented', []))}",
        f"**Not implemented**\n\n{_bullets(m.get('not_implemented', []))}",
        f"**Deviations from the paper**\n\n{_bullets(m.get('deviations', []))}",
        f"**What this run found.** {summary_sentences(m.get('paper_vs_here', []), str(m.get('model')))}",
        f"**Paper vs here**\n\n{markdown_table(m.get('paper_vs_here', []))}",
        f"**Checks** (identities and repository contracts; never counted among the papers' claims)"
        f"\n\n{markdown_table(m.get('checks', []))}",
        f"**Figures**\n\n{figures}" if figures else "",
        f"Versions: {versions}",
    ]
    return "\n\n".join(part for part in parts if part)


def result_folders(results_root: Path = RESULTS_ROOT) -> list[Path]:
    """Every results folder that holds a metrics.json, in notebook order."""
    return sorted(p.parent for p in results_root.glob(f"[0-9][0-9]_*/{METRICS_FILE}"))


def summary_table(results_root: Path = RESULTS_ROOT, in_report: bool = False) -> str:
    """One row per notebook: scale, wall time, its paper claims by verdict word, its checks, its page.

    Links are relative to the README (``results/...``), or to REPORT.md when ``in_report``.
    """
    base = "" if in_report else f"{results_root.name}/"
    rows = []
    for folder in result_folders(results_root):
        m = load_metrics(folder)
        run = m.get("run", {})
        counts = count_words(m.get("paper_vs_here", []))
        checks = [row.get("result") for row in m.get("checks", [])]
        seconds = run.get("wall_time_s")
        rows.append(
            {
                "notebook": f"[{folder.name}]({'' if in_report else base + 'REPORT.md'}#{folder.name})",
                "scale": run.get("scale", m.get("scale", "?")),
                "wall time": "?"
                if seconds is None
                else f"{seconds / 60:.1f} min" + ("" if quiet(run) else " (busy machine)"),
                **{word: counts[word] for word in WORDS},
                "checks passing": f"{checks.count(PASSES)}/{len(checks)}",
                "executed notebook": (
                    f"[page]({base}{folder.name}/{page_name(folder.name)})"
                    if (folder / page_name(folder.name)).is_file()
                    else "not written"
                ),
            }
        )
    return markdown_table(rows)


def paper_summaries(results_root: Path = RESULTS_ROOT) -> str:
    """Per notebook, two or three sentences computed from its verdicts: what reproduces, what does
    not, what cannot be tested here."""
    lines = []
    for folder in result_folders(results_root):
        m = load_metrics(folder)
        notebook = NOTEBOOKS_DIR / f"{folder.name}.ipynb"
        title = notebook_title(nbformat.read(notebook, as_version=4)) if notebook.is_file() else folder.name
        rows = m.get("paper_vs_here", [])
        found = summary_sentences(rows, f"`{m.get('model')}`") if rows else "No paper claim is tested here."
        lines.append(f"- **{title}.** {found}")
    return "\n".join(lines)


def write_report(results_root: Path = RESULTS_ROOT) -> Path:
    """Write results/REPORT.md from every results folder that holds a metrics.json."""
    header = (
        "# Sublayer Lab — reference results\n\n"
        "Generated by `python -m utils.reproduce` (`make reproduce`); do not edit by hand. Every number "
        "below was computed by the notebook's own run, except recorded artefacts that a notebook loads "
        "and labels as loaded (notebook 04's pruning runs, `data/pruning/runs.json`); the 'paper' column "
        "cites the papers. Verdicts: *holds* (the paper's direction, interval excludes the null), "
        "*opposite* (the other direction, interval excludes the null), *within noise*, *not testable "
        "here* (a precondition failed), *too few* (n below the stated minimum); counts include only "
        "the papers' claims, never the checks.\n\n"
        "## What reproduced\n\n" + paper_summaries(results_root) + "\n\n"
        + summary_table(results_root, in_report=True)
        + claim_model_section(results_root)
    )
    report = results_root / "REPORT.md"
    results_root.mkdir(parents=True, exist_ok=True)  # a report of runs that all failed still says so
    write_text_atomic(
        report,
        "\n\n".join([header, *(notebook_section(f) for f in result_folders(results_root))]) + "\n",
    )
    return report


def update_readme_summary(readme: Path = README_PATH, results_root: Path = RESULTS_ROOT) -> None:
    """Replace the README's block between the results-summary markers by the current summary table."""
    with file_lock(readme):  # read, change, write: one run at a time
        text = readme.read_text()
        start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
        if start < 0 or end < start:
            raise ValueError(
                f"{readme} lacks the markers {SUMMARY_START} ... {SUMMARY_END}; add them where the table goes"
            )
        block = (
            f"{SUMMARY_START}\n{paper_summaries(results_root)}\n\n"
            f"{summary_table(results_root)}{claim_model_section(results_root)}\n{SUMMARY_END}"
        )
        write_text_atomic(readme, text[:start] + block + text[end + len(SUMMARY_END) :])


def machine_kind() -> str:
    """This kind of machine, as measured runtimes are keyed: CPU cores and architecture, and its GPU if any."""
    gpu = f"with {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "without GPU"
    return f"{os.cpu_count()}-core {platform.machine()} CPU {gpu}"


def record_runtime(
    stem: str, scale: str, seconds: float, machine: str, path: Path = RUNTIMES_PATH
) -> dict[str, float]:
    """Store a measured wall time in ``runtimes.json``; return this machine's times for the notebook, by scale."""
    with file_lock(path):  # read, change, write: one run at a time
        data = json.loads(path.read_text()) if path.is_file() else {}
        times = data.setdefault(machine, {}).setdefault(stem, {})
        times[scale] = seconds
        write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return times


def quiet(run: dict) -> bool:
    """Whether a run's machine was quiet enough for its wall time to stand for the machine's speed.

    The run itself keeps the cores busy; a 5-minute load average above ``BUSY_LOAD_PER_CORE`` per
    core means other work shared them. Runs that did not record their load count as quiet.
    """
    load, cores = run.get("load_average_5min"), run.get("cpu_cores")
    return load is None or not cores or load <= BUSY_LOAD_PER_CORE * cores


def busy_text(run: dict) -> str:
    """The load a run saw, in words."""
    return f"5-minute load average {run['load_average_5min']} on {run['cpu_cores']} cores"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def runtime_text(machine: str, times: dict[str, float]) -> str:
    """The notebook intro's runtime sentence from measured times (scales in their usual order)."""
    measured = ", ".join(f"{scale} {_duration(times[scale])}" for scale in SCALES if scale in times)
    return f"Runtime on a {machine}, measured by `make reproduce`: {measured}."


def write_runtime_line(notebook: Path, text: str) -> bool:
    """Put ``text`` between the runtime markers of the notebook's first markdown cell, changing no other byte.

    Returns False (and changes nothing) when that cell has no markers.
    """
    raw = notebook.read_text(encoding="utf-8")
    cells = json.loads(raw)["cells"]
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), None)
    if (
        first is None
        or RUNTIME_START not in "".join(cells[first]["source"])
        or raw.count(RUNTIME_START) != 1
    ):
        return False
    start = raw.index(RUNTIME_START) + len(RUNTIME_START)
    end = raw.index(RUNTIME_END, start)
    updated = raw[:start] + json.dumps(text, ensure_ascii=False)[1:-1] + raw[end:]
    new_cells = json.loads(updated)["cells"]
    if new_cells[:first] + new_cells[first + 1 :] != cells[:first] + cells[first + 1 :]:
        raise ValueError(
            f"{notebook.name}: the runtime markers must sit inside one line of the first markdown cell"
        )
    write_text_atomic(notebook, updated)
    return True


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so an interrupted run cleans its staging folder as Ctrl-C does."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the notebooks with papermill. Results go to the git-ignored results/runs/<scale>/ "
        "unless --reference is given."
    )
    parser.add_argument("--scale", choices=SCALES, default=REFERENCE_SCALE)
    parser.add_argument(
        "--only",
        help="run only these notebooks: comma-separated number or name prefixes (e.g. 01 or 00,03)",
    )
    parser.add_argument("--device", help="device parameter passed to every notebook (paper scale)")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="write the committed reference: results/<notebook>/, results/REPORT.md, README's table, "
        "results/runtimes.json and each notebook's runtime line (default scale only)",
    )
    parser.add_argument(
        "--results-root",
        type=Path,
        help=f"folder for non-reference runs (default results/runs; also ${RUNS_ENV})",
    )
    parser.add_argument(
        "--model",
        help="run the notebooks that use the embedded model on this one instead (e.g. gemma-3-270m, "
        "after make env-gemma); with --reference its results go to results/models/<model>/",
    )
    parser.add_argument(
        "--record-runtimes",
        action="store_true",
        help="also store this run's wall times in results/runtimes.json and the notebooks' runtime lines",
    )
    return parser


def record_measured_runtime(
    notebook: Path, run: dict, machine: str, runtimes: Path = RUNTIMES_PATH, executed: Path | None = None
) -> str:
    """Record a quiet run's wall time (runtimes.json and the notebook's runtime line); say what was done.

    ``executed``, the run's executed copy, gets the same line and its HTML page is written again, so the
    page states the time of the run it shows (the time is known only once the run has finished)."""
    if not quiet(run):
        return f"runtime not recorded: the machine was busy ({busy_text(run)}); time it on a quiet machine"
    times = record_runtime(notebook.stem, run["scale"], run["wall_time_s"], machine, runtimes)
    text = runtime_text(machine, times)
    written = write_runtime_line(notebook, text)
    if executed is not None and write_runtime_line(executed, text):
        write_html_page(executed, executed.with_name(page_name(notebook.stem)))
    return f"runtime recorded: {text}" + (
        "" if written else f" ({notebook.name} has no runtime markers)"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reference and args.scale != REFERENCE_SCALE:
        parser.error(
            f"--reference writes the committed results, which are the {REFERENCE_SCALE} scale's; "
            f"drop --reference or use --scale {REFERENCE_SCALE}"
        )
    if args.reference and args.results_root:
        parser.error("--reference writes into results/; --results-root is for the other runs")
    if args.results_root:
        os.environ[RUNS_ENV] = str(args.results_root.resolve())
    if args.model == EMBEDDED_NAME:
        parser.error(f"{EMBEDDED_NAME} is the default model: leave --model out")
    extra = {"device": args.device} if args.device else {}
    chosen = notebooks(args.only)
    target = RESULTS_ROOT if args.reference else runs_root() / args.scale
    if args.model:  # a second model: its own results root; runtime lines stay the default model's
        extra["model_name"] = args.model
        chosen = [nb for nb in chosen if takes_embedded_model(nb)]
        target = model_root(args.model, target)
    machine = machine_kind() if (args.reference or args.record_runtimes) and not args.model else None
    _stop_on_sigterm()
    failed = []
    bar = tqdm(chosen, desc="notebooks", unit="nb")
    for notebook in bar:
        bar.set_postfix_str(notebook.stem)
        try:
            metrics = run_notebook(
                notebook, args.scale, target, parameters=extra, page=args.reference
            )
        except NotebookFailed as err:  # the others still run: one failure hides nothing else
            print(f"\nFAILED: {err}", file=sys.stderr)
            failed.append(notebook.stem)
            continue
        tqdm.write(
            f"{notebook.stem}: {metrics['run']['wall_time_s']} s -> {target / notebook.stem}"
        )
        if machine:
            executed = target / notebook.stem / notebook.name if args.reference else None
            tqdm.write(record_measured_runtime(notebook, metrics["run"], machine, executed=executed))
    print(f"report: {write_report(target)}")
    if args.reference:
        if args.model:  # the default model's report gains (or updates) the claim × model table
            print(f"report: {write_report(RESULTS_ROOT)}")
        update_readme_summary()
    if failed:
        print(f"{len(failed)} of {len(chosen)} notebooks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
