"""utils.pages: an executed notebook becomes one self-contained HTML page."""

import re
from pathlib import Path

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


FOLDED = (
    "### Exercise\n\n<details><summary>Hint 1</summary>\n\nUse `torch.zeros`, then\n\n"
    "```python\na = 1\n\nb = 2\n```\n\n</details>\n\n<details><summary>Solution</summary>\n\nThe answer.\n\n</details>"
)


def _page(tmp_path, cells) -> str:
    nb = new_notebook(cells=cells)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return pages.write_html_page(path, tmp_path / "nb.html").read_text()


def test_details_hold_their_content_and_stay_folded(tmp_path):
    page = _page(tmp_path, [new_markdown_cell("# Title\n\n" + FOLDED)])
    blocks = re.findall(r"<details>\s*<summary>(.*?)</summary>(.*?)</details>", page, re.S)
    assert [b[0] for b in blocks] == ["Hint 1", "Solution"]
    assert "<code>torch.zeros</code>" in blocks[0][1] and "The answer." in blocks[1][1]
    assert "a = 1\n\nb = 2" in html_text(blocks[0][1])  # the code block keeps its blank line
    assert pages.page_problems(page) == []


def html_text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment).replace("&#10;", "\n")


def test_tagged_cells_papermill_parameters_and_paths_stay_off_the_page(tmp_path):
    cells = [
        new_markdown_cell("# The *notebook* title"),
        new_code_cell('results_dir = "/work/main/results/.01_x.running"', metadata={"tags": ["injected-parameters"]}),
        new_code_cell("import secret_setup", metadata={"tags": ["remove_input"]}),
        new_code_cell("save_results(results_dir)", metadata={"tags": ["remove_cell"]}),
        new_code_cell("print('kept')"),
    ]
    page = _page(tmp_path, cells)
    assert "<title>The notebook title</title>" in page
    assert ".running" not in page and "save_results" not in page and "secret_setup" not in page
    assert "print" in page and pages.page_problems(page) == []


@pytest.mark.parametrize(
    "page, problem",
    [
        ("<title></title>", "no <title>"),
        ("<title>t</title><details><summary>Hint</summary>\n</details><p>answer</p>", "closes right after"),
        ("<title>t</title><pre>/work/main/results/x</pre>", "private or staging path"),
        ("<title>t</title><div data-mime-type=\"application/vnd.jupyter.stderr\">", "stderr"),
    ],
)
def test_page_problems_names_each_kind(page, problem):
    assert any(problem in p for p in pages.page_problems(page))


RESULTS = Path(__file__).resolve().parents[1] / "results"
REFERENCE_PAGES = sorted([*RESULTS.glob("[0-9][0-9]_*/[0-9][0-9]_*.html"),  # and every second model's
                          *RESULTS.glob("models/*/[0-9][0-9]_*/[0-9][0-9]_*.html")])


@pytest.mark.parametrize("page", REFERENCE_PAGES, ids=[str(p.parent.relative_to(RESULTS)) for p in REFERENCE_PAGES])
def test_reference_pages_have_no_problems(page):
    assert pages.page_problems(page.read_text()) == []
