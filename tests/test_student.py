"""`make student`: learner notebooks are valid, hold no solution, and stop at their first exercise stub."""

import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from scripts import make_student
from scripts.make_student import MarkerError, learner_version

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


def _first_stubbed_function(nb: nbformat.NotebookNode) -> str:
    """The name of the function whose body holds the notebook's first solution region."""
    source = next(c.source for c in nb.cells if c.cell_type == "code" and _solution_regions(c.source))
    return re.findall(r"def (\w+)\(", source.split("### BEGIN SOLUTION")[0])[-1]


def _first_error_cell(executed: Path) -> str:
    nb = nbformat.read(executed, as_version=4)
    return next(c.id for c in nb.cells if any(o.output_type == "error" for o in c.get("outputs", [])))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_learner_notebook_runs_up_to_its_first_stub(path, learner_notebooks, tmp_path):
    """At smoke scale, every cell before the first exercise runs; the first check stops on the stub, naming it."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    instructor = nbformat.read(path, as_version=4)
    found = make_student.exercises(instructor)
    if not found:
        pytest.skip(f"{path.name} has no exercise (test_every_paper_notebook_has_exercises says whether it must)")
    learner, executed = learner_notebooks[path], tmp_path / path.name
    with pytest.raises(PapermillExecutionError) as stopped:
        papermill.execute_notebook(
            str(learner), str(executed), parameters={"scale": "smoke", "results_dir": str(tmp_path / "results")},
            cwd=str(learner.parent), kernel_name="python3", progress_bar=False,
        )
    assert stopped.value.ename == "NotImplementedError"
    names = (f"Exercise {found[0].id}", _first_stubbed_function(instructor))
    assert any(name in stopped.value.evalue for name in names), f"{stopped.value.evalue!r} names neither of {names}"
    ids = [c.id for c in instructor.cells]
    heading = next(i for i, c in enumerate(instructor.cells) if c.cell_type == "markdown" and make_student.exercises_in(c.source))
    assert ids.index(_first_error_cell(executed)) > heading, "a cell before the first exercise failed"


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
