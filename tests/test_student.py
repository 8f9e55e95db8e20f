"""`make student`: learner notebooks are valid, hold no solution, stop at each stub, run to the end with
every exercise skipped, equal the instructor notebooks once the solutions are pasted back; learner work is kept."""

import re
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from scripts import make_student
from scripts.make_student import MarkerError, learner_version
from utils import checks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAPER_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("00_")]
SOLUTION_TRACES = ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "<summary>Solution")
HEADING = "### Exercise 1.2 — Knock out an edge (difficulty 2/3, ~10 min)\n\nWrite `knock`."
SOLUTION_PROSE = "<!-- BEGIN SOLUTION -->\n<details><summary>Solution</summary>\nSet scores to -inf.\n</details>\n<!-- END SOLUTION -->\n"
FUNCTION = (
    "def knock(scores):\n"
    '    """Block the edge."""\n'
    "    ### BEGIN SOLUTION\n"
    "    scores[0, 1] = float('-inf')\n"
    "    return scores\n"
    "    ### END SOLUTION\n"
    "### BEGIN HIDDEN TESTS\n"
    "assert knock is not None\n"
    "### END HIDDEN TESTS\n"
    "knock_ready = True"
)


def _notebook(*cells):
    return new_notebook(cells=list(cells))


def test_solution_becomes_a_stub_naming_the_exercise():
    nb = _notebook(new_markdown_cell(HEADING + "\n\n" + SOLUTION_PROSE + "After."), new_code_cell(FUNCTION))
    prose, code = learner_version(nb).cells
    assert prose.source == HEADING + "\n\nAfter."
    assert code.source == (
        "def knock(scores):\n"
        '    """Block the edge."""\n'
        "    # YOUR CODE HERE\n"
        '    raise NotImplementedError("Exercise 1.2: Knock out an edge")\n'
        "knock_ready = True"
    )
    namespace = {}
    exec(code.source, namespace)
    with pytest.raises(NotImplementedError, match="^Exercise 1.2: Knock out an edge$"):
        namespace["knock"](None)


def test_the_instructor_notebook_is_left_unchanged():
    nb = _notebook(new_markdown_cell(HEADING), new_code_cell(FUNCTION))
    learner_version(nb)
    assert nb.cells[1].source == FUNCTION


@pytest.mark.parametrize(
    "cells, problem",
    [
        ([new_code_cell(FUNCTION)], "no '### Exercise N.k — ...' heading before it"),
        ([new_markdown_cell(HEADING), new_code_cell("### BEGIN SOLUTION\nx = 1")], "never closed"),
        ([new_markdown_cell(HEADING), new_code_cell("### END SOLUTION")], "while no region is open"),
        ([new_markdown_cell("<!-- BEGIN SOLUTION -->\nall of it")], "without its partner"),
    ],
)
def test_unpaired_markers_are_named(cells, problem):
    with pytest.raises(MarkerError, match=re.escape(problem)):
        learner_version(_notebook(*cells))


def test_exercise_headings_are_parsed():
    (exercise,) = make_student.exercises(_notebook(new_markdown_cell(HEADING)))
    assert exercise == make_student.Exercise("1.2", "Knock out an edge", 2, 10)


@pytest.fixture(scope="module")
def learner_notebooks(tmp_path_factory):
    """`make student`'s output, written to a temporary folder."""
    out = tmp_path_factory.mktemp("student")
    return dict(zip(NOTEBOOKS, make_student.write_learner_notebooks(NOTEBOOKS, out), strict=True))


def _solution_regions(source: str) -> list[str]:
    return re.findall(r"### BEGIN SOLUTION\n(.*?)[ \t]*### END SOLUTION", source, flags=re.S)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_learner_notebook_is_valid_and_holds_no_solution(path, learner_notebooks):
    instructor = nbformat.read(path, as_version=4)
    learner = nbformat.read(learner_notebooks[path], as_version=4)
    nbformat.validate(learner)
    assert [c.get("id") for c in learner.cells] == [c.get("id") for c in instructor.cells]
    for before, after in zip(instructor.cells, learner.cells, strict=True):
        assert not any(trace in after.source for trace in SOLUTION_TRACES), f"cell {after.get('id')}"
        for region in _solution_regions(before.source):
            assert region.strip() not in after.source, f"cell {after.get('id')} still holds its solution"
    stubs = sum(c.source.count("raise NotImplementedError(\"Exercise ") for c in learner.cells)
    assert stubs == sum(len(_solution_regions(c.source)) for c in instructor.cells)


@pytest.mark.parametrize("path", PAPER_NOTEBOOKS, ids=[p.stem for p in PAPER_NOTEBOOKS])
def test_every_paper_notebook_has_exercises(path):
    assert make_student.exercises(nbformat.read(path, as_version=4)), (
        f"{path.name} has no '### Exercise N.k — <title> (difficulty d/3, ~m min)' heading"
    )


def test_teaching_page_lists_every_exercise():
    table = make_student.exercise_table(NOTEBOOKS)
    assert table in make_student.TEACHING.read_text(), "run .venv/bin/python scripts/make_student.py --teaching"


def _with_solutions_pasted(learner: nbformat.NotebookNode, instructor: nbformat.NotebookNode) -> list[str]:
    """The learner notebook's code cells with each stub replaced by the instructor's solution region."""
    stub = re.compile(r"^([ \t]*)# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\"Exercise [^\n]*\"\)$", re.M)
    pasted = []
    for before, after in zip(instructor.cells, learner.cells, strict=True):
        if after.cell_type != "code":
            continue
        regions = iter(re.findall(r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION$", before.source, flags=re.S | re.M))
        pasted.append(stub.sub(lambda _, found=regions: next(found), after.source))
    return pasted


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_pasting_the_solutions_gives_the_instructor_notebook(path, learner_notebooks):
    """(b) of issue #33: the learner notebook with the solutions pasted in is the instructor notebook's
    code, byte for byte, so its run (tests/test_nbNN_*.py) and figures are the instructor run's."""
    instructor = nbformat.read(path, as_version=4)
    learner = nbformat.read(learner_notebooks[path], as_version=4)
    code = [c.source for c in instructor.cells if c.cell_type == "code"]
    assert _with_solutions_pasted(learner, instructor) == code


def _exercise_cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, str]]:
    """(exercise id, stub cell, check cell) of every exercise: the check is the next cell calling ``check_``."""
    found, exercise = [], None
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            exercise = (make_student.exercises_in(cell.source) or [exercise])[-1]
        elif "# YOUR CODE HERE" in cell.source:
            check = next(c.source for c in cells[i + 1 :] if c.cell_type == "code" and ".check_" in c.source)
            found.append((exercise.id, cell.source, check))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_stub_stops_its_check_saying_not_written(path, learner_notebooks):
    """(a) of issue #33 for every exercise, in this process: the stub cell, then its check cell, stop
    with "not written yet" naming the exercise, and the check cell hands the function on by its name."""
    learner = nbformat.read(learner_notebooks[path], as_version=4)
    namespace: dict = {"torch": torch, "pd": pd}  # what the notebooks import before their exercises
    for number, stub, check in _exercise_cells(learner):
        assert re.search(r"^(\w+) = nb\d\d\.check_\w+\(\1\)$", check, flags=re.M), f"Exercise {number}: {check!r}"
        assert f'checks.skip("Exercise {number}")' in check, f"Exercise {number}'s check cell shows how to skip"
        exec(stub, namespace)  # noqa: S102 - the learner notebook's own cells
        with pytest.raises(NotImplementedError, match=rf"Exercise {re.escape(number)} \w+: not written yet"):
            exec(check, namespace)  # noqa: S102


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_skipped_check_hands_on_the_reference(path, learner_notebooks, monkeypatch, capsys):
    """(c) of issue #33 for every exercise, in this process: with SUBLAYER_LAB_SKIP=all each stub's check
    cell says it skipped and binds the name to the reference solution, so the notebook goes on. The cells
    after it are the instructor notebook's code (test_pasting_...), run end to end by tests/test_nbNN_*.py;
    one learner notebook also runs end to end below (a second papermill run of all six doubled the suite's
    notebook time)."""
    learner = nbformat.read(learner_notebooks[path], as_version=4)
    monkeypatch.setenv(checks.SKIP_ENV, "all")
    namespace: dict = {"torch": torch, "pd": pd}
    for number, stub, check in _exercise_cells(learner):
        name = re.search(r"^(\w+) = nb\d\d\.check_\w+\(\1\)$", check, flags=re.M)[1]
        exec(stub, namespace)  # noqa: S102 - the learner notebook's own cells
        written = namespace[name]
        exec(check, namespace)  # noqa: S102
        reference = getattr(namespace[name], "func", namespace[name])  # a functools.partial's function
        assert namespace[name] is not written and reference.__module__.startswith("utils."), number
        assert f"↷ Exercise {number} " in capsys.readouterr().out


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=[p.stem for p in NOTEBOOKS[:1]])
def test_learner_notebook_runs_to_the_end_with_every_exercise_skipped(path, learner_notebooks, tmp_path, monkeypatch):
    """(c) of issue #33 end to end, through papermill and the kernel's environment, on the first notebook:
    at smoke scale, with every exercise skipped (the stubs left in), it runs to the end on the reference
    solutions, saying so at each check."""
    import papermill

    found = make_student.exercises(nbformat.read(path, as_version=4))
    learner, executed = learner_notebooks[path], tmp_path / path.name
    monkeypatch.setenv(checks.SKIP_ENV, "all")  # the kernel inherits it
    papermill.execute_notebook(
        str(learner), str(executed), parameters={"scale": "smoke", "results_dir": str(tmp_path / "results")},
        cwd=str(learner.parent), kernel_name="python3", progress_bar=False,
    )
    text = "".join(o.get("text", "") for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", []))
    assert [f"Exercise {e.id}" for e in found] == re.findall(r"↷ (Exercise \d+\.\d+) \w+: skipped", text)


def _make_student(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "student", f"STUDENT_DIR={out}", *extra], cwd=ROOT,
                          capture_output=True, text=True, check=False)


def test_make_student_twice_keeps_an_edit(tmp_path):
    """The second `make student` refuses to overwrite an edited learner notebook; FORCE=1 keeps a backup."""
    out = tmp_path / "notebooks"
    assert _make_student(out).returncode == 0
    edited = out / NOTEBOOKS[0].name
    unedited = (out / NOTEBOOKS[1].name).read_bytes()
    edited.write_text(edited.read_text().replace("# YOUR CODE HERE", "# my answer", 1))
    mine = edited.read_bytes()
    again = _make_student(out)
    assert again.returncode != 0 and f"{edited.name} changed" in again.stderr
    assert edited.read_bytes() == mine and (out / NOTEBOOKS[1].name).read_bytes() == unedited
    assert _make_student(out, "FORCE=1").returncode == 0
    (backup,) = out.glob(f"{edited.name}.bak-*")
    assert backup.read_bytes() == mine and "# YOUR CODE HERE" in edited.read_text()
    assert _make_student(out).returncode == 0, "a notebook the script wrote itself is rewritten freely"


def test_make_student_does_not_reinstall_the_environment():
    """`make student` needs only an existing .venv (offline classroom): it never depends on `env`."""
    plan = subprocess.run(["make", "-n", "student", "STUDENT_DIR=/nonexistent"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    assert "pip install" not in plan and "make_student.py" in plan
