import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from tests.processes import finish, start, wait_for
from utils.outputs import RESULTS_ROOT, RUNS_ENV, load_metrics, save_results
from utils.scales import apply_scale

PRESETS = {"smoke": {"n": 2, "ctx": 8}, "default": {"n": 100, "ctx": 64}, "paper": {"n": 1000}}


def test_apply_scale_fills_untouched_parameters_only():
    ns = {"scale": "smoke", "n": 100, "ctx": 32}  # ctx was overridden by the caller
    assert apply_scale(ns, PRESETS) == {"n": 2, "ctx": 32}
    ns = {"scale": "paper", "n": 100, "ctx": 64}
    assert apply_scale(ns, PRESETS) == {"n": 1000, "ctx": 64}
    with pytest.raises(ValueError, match="scale must be one of"):
        apply_scale({"scale": "huge", "n": 1, "ctx": 1}, PRESETS)
    with pytest.raises(KeyError, match="ctx"):
        apply_scale({"scale": "smoke", "n": 1}, PRESETS)


def test_save_results_writes_figures_and_jsonable_metrics(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    table = pd.DataFrame([{"claim": "c", "paper": "p", "here": 1.5, "verdict": "holds"}])
    path = save_results(tmp_path, {"x": np.float32(0.5), "nan": float("nan"), "t": table}, {"line": fig})
    metrics = load_metrics(tmp_path)
    assert path.name == "metrics.json" and (tmp_path / "line.png").stat().st_size > 0
    assert metrics["x"] == 0.5 and metrics["nan"] is None and metrics["figures"] == ["line.png"]
    assert metrics["t"][0]["verdict"] == "holds"
    (tmp_path / "plain").write_text("")
    assert (tmp_path / "line.png").stat().st_mode == (tmp_path / "plain").stat().st_mode  # not owner-only


def test_failed_write_keeps_the_previous_metrics(tmp_path):
    save_results(tmp_path, {"good": 1}, {})

    class Broken:
        def savefig(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_results(tmp_path, {"good": 2}, {"fig": Broken()})
    assert json.loads((tmp_path / "metrics.json").read_text())["good"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_run_that_names_a_reference_folder_writes_to_the_runs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "runs"))
    monkeypatch.chdir(RESULTS_ROOT.parent / "notebooks")  # as JupyterLab and papermill --cwd notebooks run
    reference = RESULTS_ROOT / "00_sublayers_tour" / "metrics.json"
    before = reference.read_bytes() if reference.exists() else None
    path = save_results("../results/00_sublayers_tour", {"scale": "smoke", "value": 1}, {})
    assert path == tmp_path / "runs" / "smoke" / "00_sublayers_tour" / "metrics.json"
    assert load_metrics(path.parent)["value"] == 1 and str(path.parent) in capsys.readouterr().out
    assert (reference.read_bytes() if reference.exists() else None) == before
    elsewhere = save_results(tmp_path / "mine", {"value": 2}, {})  # any other folder is used as given
    assert elsewhere == tmp_path / "mine" / "metrics.json"


CLAIM_AND_WAIT = """\
from pathlib import Path
import time
from utils.scales import apply_scale
apply_scale(globals(), {"smoke": {}, "default": {}, "paper": {}})
Path("started").touch()
while not Path("stop").exists():
    time.sleep(0.2)
"""


def _claiming_notebook(path):
    import nbformat

    parameters = nbformat.v4.new_code_cell('scale: str = "default"\nresults_dir: str = "out"')
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(CLAIM_AND_WAIT)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.notebook
def test_a_second_notebook_run_into_the_same_folder_stops_in_its_first_cell(tmp_path):
    """Two papermill runs into one results folder: the last writer used to win, silently."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = _claiming_notebook(tmp_path / "claim.ipynb")
    run = (
        "import papermill\n"
        f"papermill.execute_notebook({str(notebook)!r}, {str(tmp_path / 'first.ipynb')!r}, cwd={str(tmp_path)!r},"
        " kernel_name='python3', progress_bar=False, parameters={'results_dir': 'shared'})"
    )
    first = start(run)
    try:
        wait_for(tmp_path / "started", first)
        with pytest.raises(PapermillExecutionError, match=r"another run is writing .*shared: pid \d+ on .*running since") as error:
            papermill.execute_notebook(str(notebook), str(tmp_path / "second.ipynb"), cwd=str(tmp_path),
                                       kernel_name="python3", progress_bar=False, parameters={"results_dir": "shared"})
        assert error.value.ename == "FolderInUse"
    finally:
        (tmp_path / "stop").touch()
        finish(first)
    # once the first run has ended, the folder is free again
    papermill.execute_notebook(str(notebook), str(tmp_path / "third.ipynb"), cwd=str(tmp_path),
                               kernel_name="python3", progress_bar=False, parameters={"results_dir": "shared"})
