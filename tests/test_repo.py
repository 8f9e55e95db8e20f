"""The repository's own files agree with each other and notebooks are committed clean."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements-lock.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {_norm(name): version for name, version in pins}


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_lock_satisfies_every_pyproject_range():
    lock = _lock()
    assert lock["torch"] == "2.13.0"
    for req in _pyproject_requirements():
        assert _norm(req.name) in lock, f"{req.name} is not pinned in requirements-lock.txt"
        assert req.specifier.contains(lock[_norm(req.name)]), f"lock pins {req.name}=={lock[_norm(req.name)]}, outside {req}"


def test_environment_yml_pins_the_same_package_set():
    text = (ROOT / "environment.yml").read_text()
    pins = dict(re.findall(r"^\s+- ([A-Za-z0-9_.-]+)==(\S+)$", text, flags=re.M))
    assert {_norm(n) for n in pins} == {_norm(r.name) for r in _pyproject_requirements()}
    lock = _lock()
    assert all(lock[_norm(n)] == v for n, v in pins.items())
    assert "python=3.11" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "scale = " in tagged[0].source and "results_dir = " in tagged[0].source


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
