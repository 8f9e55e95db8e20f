"""The repository's own files agree with each other and notebooks are committed clean."""

import importlib.util
import json
import re
import shlex
import subprocess
import sys
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
    assert len(tagged) == 1
    for name in ("scale", "dry_run", "results_dir"):  # typed, as `name: type = value`
        assert re.search(rf"^{name}: \w+ = ", tagged[0].source, flags=re.M), f"the parameters cell lacks a typed {name}"


def _clean_notebooks_script():
    spec = importlib.util.spec_from_file_location("clean_notebooks", ROOT / "scripts" / "clean_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _registered_kernelspec() -> dict[str, str]:
    """The kernelspec `make env` registers, read from the Makefile's `ipykernel install` line."""
    (line,) = [line for line in (ROOT / "Makefile").read_text().splitlines() if "ipykernel install" in line]
    args = shlex.split(line.split(">")[0])
    return {"display_name": args[args.index("--display-name") + 1], "language": "python", "name": args[args.index("--name") + 1]}


def test_clean_notebooks_writes_the_kernelspec_make_env_registers():
    assert _clean_notebooks_script().KERNELSPEC == _registered_kernelspec()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_metadata_is_what_jupyterlab_writes_for_the_project_kernel(path):
    """Opening a notebook in JupyterLab must not rewrite it: same kernelspec and language_info."""
    metadata = nbformat.read(path, as_version=4).metadata
    fix = f"run .venv/bin/python scripts/clean_notebooks.py {path.relative_to(ROOT)}"
    assert metadata.get("kernelspec") == _registered_kernelspec(), fix
    info, expected = dict(metadata.get("language_info", {})), _clean_notebooks_script().language_info()
    assert info.pop("version", "").split(".")[:2] == expected.pop("version").split(".")[:2], fix
    assert info == expected, fix
    assert set(metadata) == {"kernelspec", "language_info"}, fix


def test_lab_settings_are_valid_for_jupyterlab(tmp_path):
    """`make env` turns off JupyterLab's news and update checks: the keys must exist in its schema."""
    import jupyterlab

    script = _clean_notebooks_script()
    written = json.loads(script.write_lab_settings(tmp_path).read_text())
    schemas = Path(jupyterlab.__file__).parent / "schemas"
    if not schemas.is_dir():  # installed layout: share/jupyter/lab/schemas under the environment
        schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    for plugin, values in written.items():
        package, name = plugin.rsplit(":", 1)
        properties = json.loads((schemas / package / f"{name}.json").read_text())["properties"]
        assert set(values) <= set(properties), f"{plugin}: unknown settings {set(values) - set(properties)}"
    assert "--lab-settings" in (ROOT / "Makefile").read_text()


def test_clean_notebooks_strips_a_run_and_is_idempotent(tmp_path):
    path = tmp_path / "run.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=3)])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    nb.cells[0].metadata.update(tags=["parameters"], execution={"iopub.status.busy": "2026-01-01"})
    nb.metadata["papermill"] = {"duration": 1.0}
    nbformat.write(nb, path)
    script = _clean_notebooks_script()
    assert script.main(["--check", str(path)]) == 1
    assert script.main([str(path)]) == 0
    cleaned = nbformat.read(path, as_version=4)
    assert cleaned.cells[0].outputs == [] and cleaned.cells[0].execution_count is None
    assert cleaned.cells[0].metadata == {"tags": ["parameters"]} and "papermill" not in cleaned.metadata
    assert script.main(["--check", str(path)]) == 0


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_notebook_code_passes_ruff_with_the_line_length_on():
    """A line over 100 characters scrolls sideways on the pages; ruff's E501 is on for notebooks."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "concise", "notebooks"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]
