import json

import nbformat
import pytest

from utils import reproduce


def _notebook(path, body):
    params = nbformat.v4.new_code_cell('scale = "default"\nresults_dir = "out"')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


WRITE = (
    "from utils.outputs import save_results\n"
    "save_results(results_dir, {'notebook': 'x', 'model': 'none', 'value': VALUE,"
    " 'paper_vs_here': [{'claim': 'c', 'paper': 'p', 'here': VALUE, 'verdict': 'holds'}]}, {})"
)


@pytest.mark.notebook
def test_good_run_replaces_results_and_failed_run_keeps_them(tmp_path):
    good = _notebook(tmp_path / "99_demo.ipynb", WRITE.replace("VALUE", "1"))
    results = tmp_path / "results"
    metrics = reproduce.run_notebook(good, "smoke", results_root=results)
    assert metrics["value"] == 1 and metrics["run"]["scale"] == "smoke" and "torch" in metrics["run"]["versions"]
    bad = _notebook(tmp_path / "99_demo.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(reproduce.NotebookFailed, match=r"99_demo.ipynb failed in cell 2.*RuntimeError: boom"):
        reproduce.run_notebook(bad, "smoke", results_root=results)
    assert json.loads((results / "99_demo" / "metrics.json").read_text())["value"] == 1
    assert sorted(p.name for p in results.iterdir()) == ["99_demo"]
    report = reproduce.write_report(results).read_text()
    assert "## 99_demo" in report and "| c | p | 1 | holds |" in report


def test_unknown_notebook_prefix_lists_the_notebooks():
    with pytest.raises(SystemExit, match="00_sublayers_tour"):
        reproduce.notebooks("zz")


def _results(root, verdicts):
    folder = root / "07_demo"
    folder.mkdir(parents=True)
    rows = [{"claim": "c", "paper": "p", "here": "h", "verdict": v} for v in verdicts]
    metrics = {"notebook": "07_demo", "paper_vs_here": rows, "run": {"scale": "default", "wall_time_s": 90.0}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_readme_summary_is_replaced_between_its_markers_only(tmp_path):
    results = _results(tmp_path / "results", ["holds", "differs", "holds", "within noise (a ahead)", "comparable (proxy)"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{reproduce.SUMMARY_START}\nold table\n{reproduce.SUMMARY_END}\noutro\n")
    reproduce.update_readme_summary(readme, results)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| [07_demo](results/REPORT.md#07_demo) | default | 1.5 min | 2 | 1 | 1 | 0 | 1 |" in text
    assert "| [07_demo](#07_demo) |" in reproduce.write_report(results).read_text()


def test_readme_without_markers_is_refused_and_left_alone(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="results-summary:start"):
        reproduce.update_readme_summary(readme, _results(tmp_path / "results", ["holds"]))
    assert readme.read_text() == "no markers here\n"
