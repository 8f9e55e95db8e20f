"""Every notebook at scale='paper' with dry_run=True: the paper branches on offline stand-ins, the
smallest sizes, as many notebooks at a time as this worker has cores (tests.cores)."""

import pytest

from tests.cores import THREADS
from tests.notebook_runner import run_dry_all
from utils.reproduce import notebooks

NOTEBOOKS = [p.stem for p in notebooks()]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dry_runs")
    return root, run_dry_all(NOTEBOOKS, root, THREADS)


@pytest.mark.notebook
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_paper_dry_run_takes_the_paper_branches_offline(stem, dry_runs):
    root, outcomes = dry_runs
    if isinstance(outcomes[stem], Exception):
        raise outcomes[stem]
    assert outcomes[stem]["scale"] == "paper" and (root / stem / "metrics.json").is_file()
    print(f"{stem}: {outcomes[stem]['run']['wall_time_s']:.0f} s")
