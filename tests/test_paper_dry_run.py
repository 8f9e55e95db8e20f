"""Every notebook at scale='paper' with dry_run=True: the paper branches on offline stand-ins, clipped sizes."""

import pytest

from utils.reproduce import notebooks, run_notebook

NOTEBOOKS = [p.stem for p in notebooks()]


@pytest.mark.notebook
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_paper_dry_run_takes_the_paper_branches_offline(stem, tmp_path):
    (notebook,) = notebooks(stem)
    metrics = run_notebook(notebook, "paper", results_root=tmp_path, parameters={"dry_run": True})
    assert metrics["scale"] == "paper" and (tmp_path / stem / "metrics.json").is_file()
