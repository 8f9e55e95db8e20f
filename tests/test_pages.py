"""utils.pages: an executed notebook becomes one self-contained HTML page."""

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils import pages

CELLS = [
    new_markdown_cell("# A tiny notebook\n\nIts *prose* and ![a figure](figure.png)."),
    new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='loop'):\n    pass"),
    new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"),
    new_code_cell("print('the finding: 3 of 3')"),
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The tiny notebook executed in a fresh kernel (widget state saved, as papermill does)."""
    folder = tmp_path_factory.mktemp("page")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1))
    plt.savefig(folder / "figure.png")
    plt.close("all")
    nb = new_notebook(cells=[c.copy() for c in CELLS])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    path = folder / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_page_embeds_figures_and_shows_progress_bars_as_text(executed, tmp_path):
    target = pages.write_html_page(executed, tmp_path / "out" / "tiny.html")
    text = target.read_text()
    assert target == tmp_path / "out" / "tiny.html"
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2  # the plot and the markdown image
    assert "loop: 100%|" + "█" * pages.BAR_WIDTH + "| 3/3" in text
    assert "the finding: 3 of 3" in text
    assert pages.WIDGET_VIEW not in text and "embed-amd.js" not in text
    assert not re.findall(r"<script[^>]*\bsrc=", text)  # nothing fetched: the page reads the same offline
    assert target.stat().st_size <= pages.MAX_PAGE_BYTES


def test_a_page_over_the_limit_names_the_largest_output(executed, tmp_path, monkeypatch):
    monkeypatch.setattr(pages, "MAX_PAGE_BYTES", 10_000)
    with pytest.raises(pages.PageTooLarge, match=r"limit .* largest outputs: cell 2"):
        pages.write_html_page(executed, tmp_path / "tiny.html")
    assert not list(tmp_path.iterdir())
