"""Write the learner version of every notebook (``make student``): solutions out, stubs in.

The committed notebooks are the instructor versions. Their solution regions use nbgrader's markers,
and this script honours the same markers:

- in a code cell, each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes
  ``raise NotImplementedError("Exercise N.k: <title>")`` at the region's indentation, the exercise
  named by the closest preceding markdown heading ``### Exercise N.k — <title> (difficulty d/3, ~m min)``;
- ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions are dropped;
- in a markdown cell, everything from ``<!-- BEGIN SOLUTION -->`` to ``<!-- END SOLUTION -->`` is dropped.

The learner notebooks go to ``student/notebooks/`` (git-ignored), so their ``../results/...`` folders
land in ``student/results/``, never in the committed results.

A learner's work is never overwritten: the folder keeps a record (``.generated.json``) of what the
script wrote; a notebook that differs from it (edited, or run with outputs saved) is left alone and
the script stops with a message naming it, unless ``--force`` (``make student FORCE=1``), which first
keeps the learner's file as ``NN_name.ipynb.bak-<UTC time>`` beside it.

    .venv/bin/python scripts/make_student.py [--out student/notebooks] [--force] [notebooks...]
    .venv/bin/python scripts/make_student.py --teaching   # only rewrite TEACHING.md's exercise table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = ROOT / "notebooks"
STUDENT_DIR = ROOT / "student" / "notebooks"
TEACHING = NOTEBOOKS_DIR / "TEACHING.md"
RECORD = ".generated.json"  # in the output folder: file name -> sha256 of what this script wrote there
TABLE_START, TABLE_END = "<!-- exercises:start -->", "<!-- exercises:end -->"
EXERCISE_HEADING = re.compile(
    r"^###\s+Exercise\s+(?P<id>\d+\.\d+)\s+[—–-]\s+(?P<title>.+?)\s+"
    r"\(difficulty\s+(?P<difficulty>[123])/3,\s+~(?P<minutes>\d+)\s+min\)\s*$",
    re.M,
)
CODE_REGIONS = {"SOLUTION": True, "HIDDEN TESTS": False}  # region -> replaced by a stub (else dropped)
CODE_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<edge>BEGIN|END) (?P<region>SOLUTION|HIDDEN TESTS)\s*$")
MARKDOWN_SOLUTION = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->\n?", re.S)
MARKDOWN_MARKER = re.compile(r"<!--\s*(BEGIN|END) SOLUTION\s*-->")


class MarkerError(ValueError):
    """Solution markers that do not pair up, or a solution with no exercise heading before it."""


class EditedNotebook(RuntimeError):
    """A learner notebook in the output folder differs from what this script wrote there."""


@dataclass(frozen=True)
class Exercise:
    """One exercise as its markdown heading states it."""

    id: str
    title: str
    difficulty: int
    minutes: int

    @property
    def stub(self) -> str:
        """The statement that replaces the solution in the learner version."""
        return f'raise NotImplementedError("Exercise {self.id}: {self.title}")'


def exercises_in(markdown: str) -> list[Exercise]:
    """The exercises whose headings appear in one markdown text, in order."""
    return [
        Exercise(m["id"], m["title"], int(m["difficulty"]), int(m["minutes"]))
        for m in EXERCISE_HEADING.finditer(markdown)
    ]


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """Every exercise heading in the notebook, in order."""
    return [e for cell in nb.cells if cell.cell_type == "markdown" for e in exercises_in(cell.source)]


def strip_code(source: str, exercise: Exercise | None, where: str) -> str:
    """A code cell's source with solution regions stubbed and hidden-test regions dropped."""
    kept, open_region = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        marker = CODE_MARKER.match(line)
        if marker is None:
            if open_region is None:
                kept.append(line)
            continue
        edge, region = marker["edge"], marker["region"]
        if edge == "BEGIN" and open_region is None:
            open_region = region
            if CODE_REGIONS[region]:
                if exercise is None:
                    raise MarkerError(f"{where} line {number}: a solution region with no '### Exercise N.k — ...' heading before it")
                kept += [f"{marker['indent']}# YOUR CODE HERE", f"{marker['indent']}{exercise.stub}"]
        elif edge == "END" and open_region == region:
            open_region = None
        else:
            raise MarkerError(f"{where} line {number}: '### {edge} {region}' while {open_region or 'no region'} is open")
    if open_region is not None:
        raise MarkerError(f"{where}: '### BEGIN {open_region}' is never closed by '### END {open_region}'")
    return "\n".join(kept)


def strip_markdown(source: str, where: str) -> str:
    """A markdown cell's source without its solution blocks."""
    stripped = MARKDOWN_SOLUTION.sub("", source)
    if MARKDOWN_MARKER.search(stripped):
        raise MarkerError(f"{where}: a '<!-- BEGIN/END SOLUTION -->' marker without its partner")
    return stripped


def learner_version(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The learner notebook: solutions replaced by stubs, hidden tests and solution prose removed, no outputs."""
    learner = nbformat.from_dict(nb)
    exercise = None
    for index, cell in enumerate(learner.cells):
        where = f"cell {index} ({cell.get('id', '?')})"
        if cell.cell_type == "markdown":
            exercise = (exercises_in(cell.source) or [exercise])[-1]
            cell.source = strip_markdown(cell.source, where)
        elif cell.cell_type == "code":
            cell.source = strip_code(cell.source, exercise, where)
            cell.outputs, cell.execution_count = [], None
    return learner


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edited_notebooks(out: Path, names: list[str]) -> list[Path]:
    """Those of ``names`` in ``out`` whose content is not what this script last wrote there."""
    record_file = out / RECORD
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    return [out / n for n in names if (out / n).exists() and record.get(n) != _digest(out / n)]


def write_learner_notebooks(notebooks: list[Path], out: Path = STUDENT_DIR, force: bool = False) -> list[Path]:
    """Write the learner version of each notebook into ``out``; return the written paths.

    Raises EditedNotebook, writing nothing, if a target was edited since it was written, unless
    ``force``: then the edited file is first kept as ``<name>.bak-<UTC time>``.
    """
    learners = {}
    for path in notebooks:
        try:
            learners[path.name] = learner_version(nbformat.read(path, as_version=4))
        except MarkerError as err:
            raise MarkerError(f"{path.name}: {err}") from None
        nbformat.validate(learners[path.name])
    out.mkdir(parents=True, exist_ok=True)
    edited = edited_notebooks(out, list(learners))
    if edited and not force:
        names = ", ".join(p.name for p in edited)
        raise EditedNotebook(
            f"not overwriting learner work in {out}: {names} changed since `make student` wrote it. "
            "Collect it first, or run `make student FORCE=1` (keeps each as <name>.bak-<time>)."
        )
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for path in edited:
        path.rename(path.with_name(f"{path.name}.bak-{stamp}"))
        print(f"kept the edited {path.name} as {path.name}.bak-{stamp}")
    record_file = out / RECORD
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    written = []
    for name, learner in learners.items():
        nbformat.write(learner, out / name)
        record[name] = _digest(out / name)
        written.append(out / name)
    record_file.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return written


def exercise_table(notebooks: list[Path]) -> str:
    """The Markdown table of every notebook's exercises (difficulty, minutes) with each notebook's total."""
    lines = ["| notebook | exercise | difficulty | minutes |", "|---|---|---|---|"]
    for path in notebooks:
        found = exercises(nbformat.read(path, as_version=4))
        lines += [f"| `{path.stem}` | {e.id} {e.title} | {e.difficulty}/3 | {e.minutes} |" for e in found]
        lines.append(f"| `{path.stem}` | **total: {len(found)}** | | **{sum(e.minutes for e in found)}** |")
    return "\n".join(lines)


def update_teaching(notebooks: list[Path], page: Path = TEACHING) -> None:
    """Rewrite the exercise table between the markers in TEACHING.md from the notebooks' headings."""
    text = page.read_text(encoding="utf-8")
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{page} lacks the markers {TABLE_START} ... {TABLE_END}; add them where the table goes")
    block = f"{TABLE_START}\n{exercise_table(notebooks)}\n{TABLE_END}"
    page.write_text(text[:start] + block + text[end + len(TABLE_END) :], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: learner versions of the given notebooks (default: all of them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=STUDENT_DIR)
    parser.add_argument("--force", action="store_true", help="overwrite edited learner notebooks (kept as .bak-<time>)")
    parser.add_argument("--teaching", action="store_true", help=f"only rewrite the exercise table in {TEACHING.name}")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if args.teaching:
        update_teaching(notebooks)
        return 0
    try:
        written = write_learner_notebooks(notebooks, args.out, args.force)
    except EditedNotebook as err:
        print(err, file=sys.stderr)
        return 1
    for path in written:
        count = len(exercises(nbformat.read(path, as_version=4)))
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {count} exercises")
    return 0


if __name__ == "__main__":
    sys.exit(main())
