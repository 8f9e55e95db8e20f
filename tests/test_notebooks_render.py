"""Every notebook's prose renders as Markdown: one title, short headings, no commented-out paragraphs.

A script-to-notebook conversion once stored every prose line as ``# ...``; JupyterLab rendered each
line as a giant H1. The checker parses the markdown with markdown-it-py (CommonMark, as JupyterLab's
renderer does for headings) and names the cell and line of each problem.
"""

from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_HEADING_CHARS = 100  # a heading longer than a line of prose is a paragraph
PROSE_ENDINGS = (".", ",", ";")  # headings do not end like a sentence


def _headings(source: str) -> list[tuple[int, int, str]]:
    """(level, source line, text) of every heading in one markdown cell."""
    tokens = MarkdownIt("commonmark").parse(source)
    return [
        (int(token.tag[1]), token.map[0], tokens[i + 1].content)
        for i, token in enumerate(tokens)
        if token.type == "heading_open"
    ]


def markdown_problems(nb: nbformat.NotebookNode) -> list[str]:
    """What would not render as intended, one line per problem naming the cell and line."""
    problems, titles = [], []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        headings = _headings(cell.source)
        where = lambda line, cell=cell: f"cell {cell.get('id', '?')} line {line + 1}"
        titles += [where(line) for level, line, _ in headings if level == 1]
        lines = {line for _, line, _ in headings}
        for _, line, text in headings:
            if not text:
                problems.append(f"{where(line)}: empty heading (a bare '#')")
            elif len(text) > MAX_HEADING_CHARS:
                problems.append(f"{where(line)}: heading of {len(text)} characters: {text[:60]!r}...")
            elif text.endswith(PROSE_ENDINGS) or line + 1 in lines:
                problems.append(f"{where(line)}: commented-out '# ' prose line: {text[:60]!r}")
    if len(titles) != 1:
        problems.append(f"{len(titles)} level-1 headings (need exactly one title): {', '.join(titles[:5])}")
    return problems


COMMENTED_OUT = "# # 01 · A title\n#\n# Given a prompt such as *this*, how does a model\n# come to predict it?"


@pytest.mark.parametrize(
    "source, problem",
    [
        (COMMENTED_OUT, "commented-out '# ' prose line"),
        (COMMENTED_OUT, "empty heading"),
        ("# A title\n\n## " + "word " * 30, "heading of 149 characters"),
        ("# A title\n\nText.\n\n# A second title", "2 level-1 headings"),
        ("Only prose, no title.", "0 level-1 headings"),
    ],
)
def test_the_checker_names_each_kind_of_problem(source, problem):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])
    assert any(problem in p for p in markdown_problems(nb)), markdown_problems(nb)


def test_the_checker_accepts_real_markdown():
    source = "# 01 · A title\n\nA paragraph *with* emphasis.\n\n## 1 · A section: what?\n\n- a list\n- of items\n"
    assert markdown_problems(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source)])) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_markdown_renders(path):
    problems = markdown_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
