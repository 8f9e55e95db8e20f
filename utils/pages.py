"""An executed notebook as one self-contained HTML page a reader opens without Python.

Figures are already embedded in the executed notebook (base64 PNG outputs); markdown images are
embedded by nbconvert. Progress bars (ipywidgets, which a static page cannot draw without fetching
JavaScript) become the text line tqdm would print in a terminal, computed from the saved widget state.
The page loads nothing from the network: nbconvert's lab template without its require.js, MathJax and
mermaid scripts (fetched from a CDN, and unused: the notebooks hold no math and no diagrams).

What a reader should not see stays off the page: cells tagged ``remove_cell`` (the ``save_results``
cell) and papermill's injected parameters, the code of cells tagged ``remove_input`` (the setup
cell), the outputs of cells tagged ``remove_output``. Hints and solutions stay folded: nbconvert's
Markdown renderer ends an HTML block at the first blank line, so a ``<details>`` block would close
right after its ``<summary>`` and show its content in plain view; ``details_as_html`` renders each
block's content itself, as one HTML block. The page's ``<title>`` is the notebook's ``#`` title, and
code wraps at the page's width instead of scrolling sideways.

Public names: ``write_html_page`` (the page, at most ``MAX_PAGE_BYTES``), ``widgets_as_text``
(progress-bar widgets as their final text line), ``details_as_html``, ``notebook_title``,
``page_problems`` (what a reader must never find on a page), ``PageTooLarge``, ``MAX_PAGE_BYTES``,
``HIDDEN_CELL_TAGS``.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import TagRemovePreprocessor

from utils.files import write_text_atomic

__all__ = [
    "HIDDEN_CELL_TAGS",
    "MAX_PAGE_BYTES",
    "PageTooLarge",
    "details_as_html",
    "notebook_title",
    "page_problems",
    "widgets_as_text",
    "write_html_page",
]

MAX_PAGE_BYTES = 3_000_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 20
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
{{ super() }}
<style>.jp-InputArea-editor pre, .jp-OutputArea-output pre { white-space: pre-wrap; word-break: break-word; }</style>
{%- endblock extra_css -%}
"""  # nbconvert's lab page without the scripts it would fetch from a CDN; code wraps, never scrolls
HIDDEN_CELL_TAGS = ("remove_cell", "injected-parameters")  # papermill tags its cell of overrides
DETAILS = re.compile(r"(<details>\s*<summary>.*?</summary>)(.*?)(</details>)", re.S)
PRE = re.compile(r"<pre>.*?</pre>", re.S)
# what a page must never show: a path on the machine that ran it, a run's staging folder
PRIVATE_PATH = re.compile(r"(?:/(?:home|root|tmp|work|Users|private)/[\w.-]+|\.\d{2}_\w+\.running)")
STDERR_MIME = 'data-mime-type="application/vnd.jupyter.stderr"'  # a stderr output on the page


class PageTooLarge(ValueError):
    """The page exceeds MAX_PAGE_BYTES; the message names the largest outputs to shrink."""


def _widget_text(model_id: str, state: dict) -> str | None:
    """The text of a tqdm widget (its HTML labels around a drawn bar), or None for another widget."""
    model = state.get(model_id, {})
    parts = []
    for child in model.get("state", {}).get("children", []):
        sub = state.get(child.removeprefix("IPY_MODEL_"), {})
        values = sub.get("state", {})
        if sub.get("model_name") == "HTMLModel":
            parts.append(html.unescape(values.get("value", "")).replace("\u2007", " "))
        elif sub.get("model_name") in ("FloatProgressModel", "IntProgressModel"):
            done = values.get("value", 0) / values["max"] if values.get("max") else 0.0
            filled = round(BAR_WIDTH * min(max(done, 0.0), 1.0))
            parts.append("|" + "█" * filled + " " * (BAR_WIDTH - filled) + "|")
    return "".join(parts) or None


def widgets_as_text(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace progress-bar widget outputs by their final text and drop the saved widget state."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            text = view and _widget_text(view["model_id"], state)
            if text:
                output["data"]["text/plain"] = text
    return nb


def _one_block(rendered: str) -> str:
    """HTML with no blank line, so that Markdown keeps it as one raw block (newlines in <pre> kept)."""
    rendered = PRE.sub(lambda m: m.group(0).replace("\n", "&#10;"), rendered)
    return "\n".join(line for line in rendered.splitlines() if line.strip())


def details_as_html(source: str) -> str:
    """``source`` (Markdown) with each ``<details>`` block's content rendered to HTML inside it."""
    return DETAILS.sub(
        lambda m: _one_block(m.group(1) + markdown2html(m.group(2).strip()) + m.group(3)), source
    )


def notebook_title(nb: nbformat.NotebookNode) -> str:
    """The text of the notebook's first ``#`` heading (its title), else an empty string."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            found = re.search(r"^# (.+)$", cell.source, flags=re.M)
            if found:
                return re.sub(r"[*_`]", "", found.group(1)).strip()
    return ""


def page_problems(page: str) -> list[str]:
    """What a reader must never find on a page: open folds, private paths, stderr, no title."""
    problems = []
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    if not title or not title.group(1).strip():
        problems.append("the page has no <title>")
    for body in re.findall(r"<details>\s*<summary>.*?</summary>(.*?)</details>", page, re.S):
        if not body.strip():
            problems.append("a <details> block closes right after its <summary>: its content shows")
    for path in sorted(set(PRIVATE_PATH.findall(page))):
        problems.append(f"a private or staging path is on the page: {path}")
    if STDERR_MIME in page:
        problems.append("a cell wrote to stderr (silence it at its source)")
    return problems


def _largest_outputs(nb: nbformat.NotebookNode, n: int = 3) -> str:
    sizes = [
        (sum(len(str(v)) for v in output.get("data", {}).values()), index)
        for index, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
    ]
    return ", ".join(f"cell {i} ({size / 1e6:.1f} MB)" for size, i in sorted(sizes, reverse=True)[:n])


def write_html_page(executed_notebook: Path, target: Path) -> Path:
    """Write ``executed_notebook`` as a self-contained HTML page at ``target`` (≤ 3 MB); return ``target``."""
    nb = widgets_as_text(nbformat.read(executed_notebook, as_version=4))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = details_as_html(cell.source)
    exporter = HTMLExporter(
        embed_images=True,
        extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
        template_file="offline.html.j2",
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(
            remove_cell_tags=set(HIDDEN_CELL_TAGS),
            remove_input_tags={"remove_input"},
            remove_all_outputs_tags={"remove_output"},
            enabled=True,
        ),
        enabled=True,
    )
    body, _ = exporter.from_notebook_node(
        nb,
        resources={
            "metadata": {
                "path": str(Path(executed_notebook).parent),
                "name": notebook_title(nb) or Path(executed_notebook).stem,
            }
        },
    )
    data = body.encode("utf-8")
    if len(data) > MAX_PAGE_BYTES:
        raise PageTooLarge(
            f"{executed_notebook.name} renders to {len(data) / 1e6:.1f} MB (limit {MAX_PAGE_BYTES / 1e6:.0f} MB); "
            f"largest outputs: {_largest_outputs(nb)}. Save those figures at a lower dpi or show fewer rows."
        )
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, body)
    return target
