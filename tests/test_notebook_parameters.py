"""Each notebook's first code cells stop early on bad parameters and, offline, at paper scale.

Only the parameters cell, the injected overrides (headed ``# Parameters``, as papermill writes them)
and the setup cell run, in one shared kernel: the setup cell's first line (apply_scale) must raise
before any model or data is loaded.
"""

import ast
import importlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

from utils import online
from utils.reproduce import NOTEBOOKS_DIR, notebooks

NOTEBOOKS = [p.stem for p in notebooks()]


def first_cells(stem: str) -> tuple[str, str]:
    """Source of the ``parameters`` cell and of the setup cell after it."""
    code = [
        c
        for c in nbformat.read(NOTEBOOKS_DIR / f"{stem}.ipynb", as_version=4).cells
        if c.cell_type == "code"
    ]
    assert "parameters" in code[0].metadata.get("tags", []), (
        f"{stem}: first code cell is not tagged parameters"
    )
    return code[0].source, code[1].source


def parameters_of(stem: str) -> dict:
    """The parameters cell's values (literals only)."""
    values = {}
    for node in ast.parse(first_cells(stem)[0]).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and node.value is not None:
            try:
                values[target.id] = ast.literal_eval(node.value)
            except ValueError:
                values[target.id] = None  # an expression such as list(range(30)): not a literal
    return values


def presets_of(stem: str) -> dict:
    """The PRESETS the setup cell passes to apply_scale (``from utils import x as Y`` ... ``Y.PRESETS``)."""
    setup = first_cells(stem)[1]
    alias = re.search(r"apply_scale\(globals\(\), (\w+)\.PRESETS", setup).group(1)
    module = re.search(rf"from utils import (\w+) as {alias}\b", setup)
    return importlib.import_module(f"utils.{module.group(1) if module else alias}").PRESETS


def count_parameter(stem: str) -> str:
    """A count parameter (``n_...``, a positive int) of the notebook's parameters cell."""
    return next(
        k for k, v in parameters_of(stem).items() if k.startswith("n_") and type(v) is int and v > 0
    )


CASES = {
    "wrong_type": lambda stem: {count_parameter(stem): "abc"},
    "paper_offline": lambda stem: {"scale": "paper"},
    "misspelt": lambda stem: {count_parameter(stem)[:-1]: 1},
}


@pytest.fixture(scope="module")
def setup_errors() -> dict:
    """(case, notebook) -> (error name, message) of the setup cell, all run in one kernel."""
    cells, keys = [], []
    for case, overrides in CASES.items():
        for stem in NOTEBOOKS:
            parameters, setup = first_cells(stem)
            injected = "\n".join(["# Parameters", *(f"{k} = {v!r}" for k, v in overrides(stem).items())])  # as papermill writes it
            cells += [
                nbformat.v4.new_code_cell(s) for s in ("%reset -f", parameters, injected, setup)
            ]
            keys.append((case, stem))
    notebook = nbformat.v4.new_notebook(cells=cells)
    NotebookClient(
        notebook,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    ).execute()
    errors = {}
    for key, cell in zip(keys, notebook.cells[3::4], strict=True):
        error = next((o for o in cell.outputs if o.output_type == "error"), None)
        errors[key] = (
            (error.ename, error.evalue) if error else (None, "no error: the setup cell ran on")
        )
    return errors


@pytest.mark.notebook
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_wrong_type_stops_in_the_setup_cell(setup_errors, stem):
    ename, message = setup_errors[("wrong_type", stem)]
    assert (
        ename == "ParameterError"
        and f"{count_parameter(stem)} must be a positive int, got 'abc'" in message
    )


@pytest.mark.notebook
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_a_misspelt_parameter_stops_in_the_setup_cell_naming_the_right_one(setup_errors, stem):
    ename, message = setup_errors[("misspelt", stem)]
    right = count_parameter(stem)
    assert ename == "ParameterError" and f"unknown parameter {right[:-1]!r}; did you mean {right!r}" in message, message


@pytest.mark.notebook
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_paper_scale_offline_names_what_it_needs(setup_errors, stem):
    parameters = {**parameters_of(stem), **presets_of(stem)["paper"]}
    needs = online.online_needs(parameters)
    if not needs:
        pytest.skip(f"{stem}: its parameters at paper scale name no online model or dataset yet")
    ename, message = setup_errors[("paper_offline", stem)]
    assert ename == "OnlineRequiredError", message
    for need in needs:
        assert f"{need.kind} {need.name!r} ({need.parameter})" in message


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_papermill_reads_every_parameter_with_its_type(stem):
    """`papermill --help-notebook` shows each parameter's type (a ':' in a line's comment hides it)."""
    from papermill.translators import PythonTranslator

    read = {
        p.name: p.inferred_type_name
        for p in PythonTranslator.inspect({"source": first_cells(stem)[0]})
    }
    unread = [name for name in parameters_of(stem) if read.get(name, "None") == "None"]
    assert not unread, f"{stem}: papermill cannot read the type of {unread} (remove the ':' from their comments)"
