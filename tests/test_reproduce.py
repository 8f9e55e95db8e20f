import json
import os
import shutil
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from tests.processes import wait_for
from utils import reproduce
from utils.outputs import REPO_ROOT, RUNS_ENV


def _notebook(path, *bodies):
    params = nbformat.v4.new_code_cell('scale = "default"\nresults_dir = "out"')
    params.metadata["tags"] = ["parameters"]
    cells = [
        nbformat.v4.new_markdown_cell("# Demo"),
        params,
        *map(nbformat.v4.new_code_cell, bodies),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


WRITE = (
    "from utils.outputs import save_results\n"
    "save_results(results_dir, {'notebook': 'x', 'model': 'none', 'value': VALUE,"
    " 'paper_vs_here': [{'claim': 'c', 'paper': 'p', 'here': VALUE, 'verdict': 'holds'}]}, {})"
)


@pytest.mark.notebook
def test_good_run_replaces_results_and_failed_run_keeps_them_and_its_evidence(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    good = _notebook(tmp_path / "99_demo.ipynb", WRITE.replace("VALUE", "1"))
    metrics = reproduce.run_notebook(good, "smoke", page=True)  # not a reference run: goes to the runs folder
    results = tmp_path / "runs" / "smoke"
    assert (
        metrics["value"] == 1
        and metrics["run"]["scale"] == "smoke"
        and "torch" in metrics["run"]["versions"]
    )
    assert json.loads((results / "99_demo" / "metrics.json").read_text())["value"] == 1
    bad = _notebook(
        tmp_path / "99_demo.ipynb", "x = 1", "\n# the failing cell\nraise RuntimeError('boom')"
    )
    expected = r"99_demo.ipynb failed in cell 4 of 4 \(`# the failing cell`\): RuntimeError: boom"
    with pytest.raises(reproduce.NotebookFailed, match=expected) as failure:
        reproduce.run_notebook(bad, "smoke", results_root=results)
    (kept,) = (tmp_path / "runs" / "failed").glob("99_demo-*.ipynb")
    assert str(kept) in str(failure.value) and "boom" in kept.read_text()
    assert json.loads((results / "99_demo" / "metrics.json").read_text())["value"] == 1
    assert sorted(p.name for p in results.iterdir()) == ["99_demo"]
    report = reproduce.write_report(results).read_text()
    assert "## 99_demo" in report and "| c | p | 1 | holds |" in report
    assert "[99_demo.html](99_demo/99_demo.html)" in report and "| [page](99_demo/99_demo.html) |" in report
    assert "save_results" in (results / "99_demo" / "99_demo.html").read_text()


def test_failing_cell_is_numbered_as_in_the_committed_notebook(tmp_path):
    def cell(source, tag=None, kind=nbformat.v4.new_code_cell):
        made = kind(source)
        made.metadata["tags"] = [tag] if tag else []
        return made

    def error_note():
        return cell("An Exception was encountered", reproduce.ERROR_TAG, nbformat.v4.new_markdown_cell)

    cells = [cell("# Demo", kind=nbformat.v4.new_markdown_cell), cell("n = 1", "parameters"),
             cell("# Parameters\nn = 'abc'", reproduce.INJECTED_TAG), cell("x = 1"), cell("\n\nraise ValueError(n)")]
    executed = tmp_path / "executed.ipynb"  # as papermill writes it: error notes at the top and before the cell
    nbformat.write(nbformat.v4.new_notebook(cells=[error_note(), *cells[:4], error_note(), cells[4]]), executed)
    assert reproduce.failing_cell(executed, 4) == "cell 4 of 4 (`raise ValueError(n)`)"
    assert reproduce.failing_cell(executed, 2) == "the injected parameters (check the -p values)"


SLEEP = (
    "from pathlib import Path\nimport time\nPath(results_dir, 'started').touch()\ntime.sleep(120)"
)
INTERRUPTIBLE = (
    "import sys\nfrom pathlib import Path\nfrom utils import reproduce\nreproduce._stop_on_sigterm()\n"
    "reproduce.run_notebook(Path(sys.argv[1]), 'smoke', results_root=Path(sys.argv[2]))"
)


@pytest.mark.notebook
def test_sigterm_removes_the_staging_folder(tmp_path):
    notebook = _notebook(tmp_path / "98_sleep.ipynb", SLEEP)
    results = tmp_path / "results"
    staging = results / ".98_sleep.running"
    run = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, str(notebook), str(results)])
    deadline = time.time() + 120
    while not (staging / "started").exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert (staging / "started").exists(), "the notebook never started"
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) != 0
    assert not staging.exists() and not (results / "98_sleep").exists()


@pytest.mark.notebook
def test_a_second_run_into_the_same_results_folder_stops_at_once_naming_the_first(tmp_path):
    """Two `utils.reproduce --only 00` at once on one results root: the second used to delete the first's
    staging folder, and the first then failed with "output folder ... .running doesn't exist"."""
    notebook = _notebook(tmp_path / "98_sleep.ipynb", SLEEP)
    results = tmp_path / "results"
    first = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE, str(notebook), str(results)])
    try:
        wait_for(results / ".98_sleep.running" / "started", first)
        started = time.time()
        with pytest.raises(reproduce.NotebookFailed, match=rf"98_sleep.ipynb not run: another run is writing "
                                                           rf"{results / '98_sleep'} \(pid {first.pid} on "):
            reproduce.run_notebook(notebook, "smoke", results_root=results)
        assert time.time() - started < 5  # at once, without starting a kernel
        assert (results / ".98_sleep.running" / "started").exists()  # the first run's work is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_only_names_exactly_one_notebook_per_pattern():
    assert [p.stem[:2] for p in reproduce.notebooks("03, 00")] == ["00", "03"]
    for pattern, problem in [
        ("", "is empty"),
        ("0", "matches 6 notebooks"),
        ("zz", "matches no notebook"),
    ]:
        with pytest.raises(SystemExit, match=f"--only '{pattern}' {problem}.*00_sublayers_tour"):
            reproduce.notebooks(pattern)
    with pytest.raises(SystemExit, match="is empty"):
        reproduce.notebooks("00,")


def test_reference_is_only_the_default_scale(capsys):
    with pytest.raises(SystemExit):
        reproduce.main(["--scale", "smoke", "--reference", "--only", "00"])
    assert "--reference writes the committed results" in capsys.readouterr().err


def _results(root, verdicts):
    folder = root / "07_demo"
    folder.mkdir(parents=True)
    rows = [{"claim": f"c{i}", "paper": "p", "here": "h", "verdict": v} for i, v in enumerate(verdicts)]
    metrics = {
        "notebook": "07_demo",
        "model": "m",
        "paper_vs_here": rows,
        "checks": [{"check": "identity", "expected": "exact", "here": "exact", "result": "passes"}],
        "run": {"scale": "default", "wall_time_s": 90.0},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_readme_summary_is_replaced_between_its_markers_only(tmp_path):
    results = _results(
        tmp_path / "results",
        ["holds", "opposite", "holds", "within noise", "not testable here"],
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        f"intro\n{reproduce.SUMMARY_START}\nold table\n{reproduce.SUMMARY_END}\noutro\n"
    )
    reproduce.update_readme_summary(readme, results)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert (
        "| [07_demo](results/REPORT.md#07_demo) | default | 1.5 min | 2 | 1 | 1 | 1 | 0 | 1/1 | not written |"
        in text
    )
    assert "On `m`, “c0” and “c2” reproduce. “c1” comes out the other way and “c3” is within noise." in text
    report = reproduce.write_report(results).read_text()
    assert "| [07_demo](#07_demo) |" in report and "## What reproduced" in report
    assert "**Checks**" in report and "| identity | exact | exact | passes |" in report


def test_a_verdict_outside_the_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not one of"):
        reproduce.summary_table(_results(tmp_path / "results", ["differs"]))


def test_readme_without_markers_is_refused_and_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results-summary:start"):
        reproduce.update_readme_summary(readme, _results(tmp_path / "results", ["holds"]))
    assert readme.read_text() == "no markers here\n"


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


LINE = f"Runs in {reproduce.RUNTIME_START}not yet measured.{reproduce.RUNTIME_END} · é\n"


def test_runtime_line_changes_only_the_text_between_its_markers(tmp_path):
    line = LINE
    cells = [
        {
            "cell_type": "markdown",
            "id": "a",
            "metadata": {},
            "source": ["# Title\n", line, "More."],
        },
        {
            "cell_type": "code",
            "id": "b",
            "metadata": {},
            "source": ["x = 1"],
            "outputs": [],
            "execution_count": None,
        },
    ]
    notebook = tmp_path / "07_demo.ipynb"
    original = _dump({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    notebook.write_text(original, encoding="utf-8")
    times = reproduce.record_runtime(
        "07_demo", "default", 150.0, "2-core test CPU", tmp_path / "runtimes.json"
    )
    times = reproduce.record_runtime(
        "07_demo", "smoke", 41.2, "2-core test CPU", tmp_path / "runtimes.json"
    )
    text = reproduce.runtime_text("2-core test CPU", times)
    assert (
        text
        == "Runtime on a 2-core test CPU, measured by `make reproduce`: smoke 41 s, default 2.5 min."
    )
    assert reproduce.write_runtime_line(notebook, text)
    assert notebook.read_text(encoding="utf-8") == original.replace("not yet measured.", text)
    unmarked = tmp_path / "08_demo.ipynb"
    unmarked.write_text(original.replace(reproduce.RUNTIME_START, ""), encoding="utf-8")
    assert not reproduce.write_runtime_line(unmarked, text)
    assert unmarked.read_text(encoding="utf-8") == original.replace(reproduce.RUNTIME_START, "")


def test_runtimes_of_a_busy_machine_are_not_taken_as_its_speed(tmp_path):
    assert reproduce.quiet({"load_average_5min": 2.6, "cpu_cores": 2})
    assert not reproduce.quiet({"load_average_5min": 16.2, "cpu_cores": 2})
    assert reproduce.quiet({"wall_time_s": 3.0})  # older runs recorded no load
    folder = tmp_path / "results" / "07_demo"
    folder.mkdir(parents=True)
    run = {"scale": "default", "wall_time_s": 90.0, "load_average_5min": 16.2, "cpu_cores": 2}
    (folder / "metrics.json").write_text(json.dumps({"notebook": "07_demo", "paper_vs_here": [], "run": run}))
    assert "| 1.5 min (busy machine) |" in reproduce.summary_table(folder.parent)
    notebook, runtimes = tmp_path / "07_demo.ipynb", tmp_path / "runtimes.json"
    notebook.write_text(_dump({"cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": [LINE]}]}))
    message = reproduce.record_measured_runtime(notebook, run, "2-core test CPU", runtimes)
    assert message.startswith("runtime not recorded: the machine was busy (5-minute load average 16.2 on 2 cores)")
    assert not runtimes.exists() and json.loads(notebook.read_text())["cells"][0]["source"] == [LINE]
    message = reproduce.record_measured_runtime(notebook, {**run, "load_average_5min": 2.1}, "2-core test CPU", runtimes)
    assert message == "runtime recorded: Runtime on a 2-core test CPU, measured by `make reproduce`: default 1.5 min."
    assert json.loads(runtimes.read_text()) == {"2-core test CPU": {"07_demo": {"default": 90.0}}}
    assert message.removeprefix("runtime recorded: ") in notebook.read_text()
    executed = tmp_path / "run" / "07_demo.ipynb"  # a reference run's executed copy: its page shows the new time
    executed.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(LINE)]), executed)
    reproduce.record_measured_runtime(notebook, {**run, "load_average_5min": 2.1}, "2-core test CPU", runtimes, executed)
    assert "default 1.5 min" in executed.read_text()
    assert "default 1.5 min" in (executed.parent / reproduce.page_name("07_demo")).read_text()


def _git(repo, *args) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.mark.notebook
def test_smoke_reproduce_in_a_clone_leaves_git_status_clean(tmp_path):
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone))
    for name in _git(REPO_ROOT, "ls-files", "-z").split(
        "\0"
    ):  # the working tree's tracked files, as they are now
        if name and (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, clone / name)
    _git(
        clone,
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.org",
        "commit",
        "--quiet",
        "--allow-empty",
        "-am",
        "now",
    )
    env = {k: v for k, v in os.environ.items() if k != RUNS_ENV} | {"PYTHONPATH": str(clone)}  # kernels import the clone's utils
    run = subprocess.run(
        [sys.executable, "-m", "utils.reproduce", "--scale", "smoke", "--only", "00"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (clone / "results" / "runs" / "smoke" / "00_sublayers_tour" / "metrics.json").is_file()
    assert _git(clone, "status", "--porcelain", "--untracked-files=all") == ""
