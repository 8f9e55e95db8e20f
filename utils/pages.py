"""An executed notebook as one self-contained HTML page a reader opens without Python.

Figures are already embedded in the executed notebook (base64 PNG outputs); markdown images are
embedded by nbconvert. Progress bars (ipywidgets, which a static page cannot draw without fetching
JavaScript) become the text line tqdm would print in a terminal, computed from the saved widget state.
The page loads nothing from the network: nbconvert's lab template without its require.js, MathJax and
mermaid scripts (fetched from a CDN, and unused: the notebooks hold no math and no diagrams).

Public names: ``write_html_page`` (the page, at most ``MAX_PAGE_BYTES``), ``widgets_as_text``
(progress-bar widgets as their final text line), ``PageTooLarge``, ``MAX_PAGE_BYTES``.
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

__all__ = ["MAX_PAGE_BYTES", "PageTooLarge", "widgets_as_text", "write_html_page"]

MAX_PAGE_BYTES = 3_000_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
BAR_WIDTH = 20
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""  # nbconvert's lab page without the scripts it would fetch from a CDN


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
    exporter = HTMLExporter(embed_images=True, extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(
        nb, resources={"metadata": {"path": str(Path(executed_notebook).parent)}}
    )
    data = body.encode("utf-8")
    if len(data) > MAX_PAGE_BYTES:
        raise PageTooLarge(
            f"{executed_notebook.name} renders to {len(data) / 1e6:.1f} MB (limit {MAX_PAGE_BYTES / 1e6:.0f} MB); "
            f"largest outputs: {_largest_outputs(nb)}. Save those figures at a lower dpi or show fewer rows."
        )
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
