"""utils.circuits.interactive (the hoverable circuit SVG) and the greater-than account in
utils.circuits.report, on hand-built graphs and tables."""

import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output  # noqa: E402

from utils import circuits as C  # noqa: E402
from utils import pages  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"
TOKENS = ["The", " war", " lasted", " from", " 17", "32", " to", " 17"]
LABEL = 'reads <year> & "17" → writes \'later\''  # every character XML must escape
CONTEXTS = pd.DataFrame({
    "activation": [3.0, 2.0, 1.0, 0.5],
    "token": ["<b>", "32", "&", "x"],
    "context": ["from the year [[<b>]] on", "in 17[[32]]\x01 the", "Tom [[&]] Jerry", "a" * 400],
})


def hand_graph() -> C.Graph:
    """A small circuit: root <- features <- head <- embedding, errors at two layers (layer 2's at
    two positions, merged into one node), a bias; one edge lowers the root."""
    rows = {
        "root": {"kind": "target", "layer": 4.5, "pos": 7, "unit": -1, "src": None, "attribution": 1.2},
        "L2.F7@7": {"kind": "feature", "layer": 2, "pos": 7, "unit": 7, "src": None, "attribution": 0.8},
        "L3.F1@7": {"kind": "feature", "layer": 3, "pos": 7, "unit": 1, "src": None, "attribution": -0.3},
        "L1.H2 7<-5": {"kind": "head", "layer": 1, "pos": 7, "unit": 2, "src": 5, "attribution": 0.5},
        "embed@5": {"kind": "embed", "layer": -1, "pos": 5, "unit": 32, "src": None, "attribution": 0.2},
        "L2.tc_error@7": {"kind": "tc_error", "layer": 2, "pos": 7, "unit": -1, "src": None, "attribution": 0.1},
        "L2.tc_error@5": {"kind": "tc_error", "layer": 2, "pos": 5, "unit": -1, "src": None, "attribution": 0.02},
        "L3.tc_error@7": {"kind": "tc_error", "layer": 3, "pos": 7, "unit": -1, "src": None, "attribution": 0.05},
        "L2.tc_bias@7": {"kind": "tc_bias", "layer": 2, "pos": 7, "unit": -1, "src": None, "attribution": 0.04},
    }
    edges = [("root", "L2.F7@7", 0.8), ("root", "L3.F1@7", -0.3), ("root", "L3.tc_error@7", 0.05),
             ("root", "L2.tc_bias@7", 0.04), ("L2.F7@7", "L1.H2 7<-5", 0.5), ("L2.F7@7", "L2.tc_error@7", 0.1),
             ("L1.H2 7<-5", "embed@5", 0.2), ("L3.F1@7", "L2.F7@7", 0.1),
             ("L1.H2 7<-5", "L2.tc_error@5", 0.02)]
    return C.Graph(nodes=rows, edges=[{"parent": p, "child": c, "attribution": a} for p, c, a in edges])


def svg_parts(svg: str) -> tuple[list[ET.Element], list[ET.Element]]:
    """The node groups and edge groups of a circuit SVG (parsing fails unless it is well-formed XML)."""
    root = ET.fromstring(svg)
    groups = root.iter(f"{SVG}g")
    nodes, edges = [], []
    for g in groups:
        {"node": nodes, "edge": edges}.get(g.get("class"), []).append(g)
    return nodes, edges


def tooltip(group: ET.Element) -> str:
    return group.find(f"{SVG}title").text


def labelled_svg(**options) -> str:
    labels = pd.DataFrame({"layer": [2], "unit": [7], "label": [LABEL]})
    return C.circuit_svg(hand_graph(), TOKENS, "Circuit <for> 1732 & co", labels, {(2, 7): CONTEXTS}, **options)


def test_feature_tooltips_hold_label_position_and_contexts_escaped():
    svg = labelled_svg()
    nodes, _ = svg_parts(svg)
    tips = {tooltip(g).split("\n")[0]: tooltip(g) for g in nodes}
    feature = tips["L2 F7, an MLP feature at position 7 (' 17')"]
    lines = feature.split("\n")
    assert lines[1] == "attribution to the root +0.800" and lines[2] == LABEL
    assert lines[4:7] == ["3.00  from the year [[<b>]] on", "2.00  in 17[[32]] the", "1.00  Tom [[&]] Jerry"]
    assert len(lines[7]) == len("0.50  ") + C.interactive.MAX_CONTEXT_CHARS  # a long context is cut
    assert "[[<b>]]" not in svg and "[[&lt;b&gt;]]" in svg and "\x01" not in svg  # escaped, control char dropped
    assert tips["L1 H2: position 7 (' 17') reads position 5 ('32')"].endswith("+0.500")
    assert "L3 F1" in "".join(tips) and LABEL not in tips["L3 F1, an MLP feature at position 7 (' 17')"]


def test_contexts_per_node_are_capped():
    nodes, _ = svg_parts(labelled_svg(max_contexts=2))
    feature = next(tooltip(g) for g in nodes if tooltip(g).startswith("L2 F7"))
    assert feature.split("\n")[-2:] == ["3.00  from the year [[<b>]] on", "2.00  in 17[[32]] the"]


def test_same_nodes_edges_positions_colours_and_widths_as_the_static_figure():
    graph = hand_graph()
    fig, ax = plt.subplots()
    shown = C.plot_circuit(graph, ax, TOKENS, "static")
    static_edges = sorted((to_hex(line.get_color()), round(line.get_linewidth(), 2)) for line in ax.lines)
    static_nodes = [to_hex(c.get_facecolor()[0][:3]) for c in ax.collections]
    plt.close(fig)
    nodes, edges = svg_parts(C.circuit_svg(graph, TOKENS, "interactive"))
    assert len(nodes) == len(shown) == len(static_nodes) == 8  # layer 2's two error nodes merged
    assert len(edges) == len(ax.lines) == 9
    svg_edges = sorted((e.find(f"{SVG}line").get("stroke"), float(e.find(f"{SVG}line").get("stroke-width")))
                       for e in edges)
    assert svg_edges == static_edges
    circles = [g.find(f"{SVG}circle") for g in nodes]
    assert [c.get("fill") for c in circles] == static_nodes
    spots, _ = C.circuit_layout(shown, len(TOKENS))
    where = np.array([spots[name] for name in shown.name])
    drawn = np.array([[float(c.get("cx")), float(c.get("cy"))] for c in circles])
    for axis in (0, 1):  # one affine map from layout units to pixels, y pointing down
        slope, offset = np.polyfit(where[:, axis], drawn[:, axis], 1)
        assert np.allclose(where[:, axis] * slope + offset, drawn[:, axis], atol=0.06)
        assert (slope > 0) == (axis == 0)


def test_edge_tooltips_hold_their_attribution_and_the_legend_is_drawn():
    svg = C.circuit_svg(hand_graph(), TOKENS, "t")
    _, edges = svg_parts(svg)
    tips = sorted(tooltip(e) for e in edges)
    assert "L1.H2 7<-5 → L2.F7@7: attribution +0.500" in tips
    assert "L3.F1@7 → root: attribution -0.300" in tips
    assert "raises the target" in svg and "lowers the target" in svg and "widest: 0.80" in svg


def test_interactive_circuit_survives_the_exported_page(tmp_path):
    shown = C.interactive_circuit(hand_graph(), TOKENS, "t", labels=pd.DataFrame(
        {"layer": [2], "unit": [7], "label": [LABEL]}), contexts={(2, 7): CONTEXTS})
    cell = new_code_cell("C.interactive_circuit(...)", outputs=[
        new_output("display_data", data={"text/html": shown.data, "text/plain": "<circuit>"})])
    nb = new_notebook(cells=[new_markdown_cell("# Circuit page"), cell])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    page = pages.write_html_page(path, tmp_path / "nb.html").read_text()
    assert not pages.page_problems(page)
    assert "from the year [[&lt;b&gt;]] on" in page and '<g class="node"><title>' in page
    assert not re.findall(r"<script[^>]*\bsrc=", page)


def test_feature_contexts_take_the_top_non_sink_tokens_of_layers_with_a_transcoder():
    tokens = torch.arange(8).reshape(2, 4)
    x = torch.zeros(8, 2)
    x[:, 0] = torch.tensor([9.0, 1, 2, 3, 4, 8, 6, 7])  # feature 0 reads input dimension 0
    ev = SimpleNamespace(tokens=tokens, x={1: x}, keep=torch.tensor([False] + [True] * 7))  # token 0 a sink
    tc = SimpleNamespace(encode=lambda inputs: torch.relu(inputs))
    model = SimpleNamespace(to_string=lambda t: "".join(f"<{int(i)}>" for i in torch.as_tensor(t).reshape(-1)))
    nodes = pd.DataFrame({"layer": [1, 1, 3], "unit": [0, 0, 5]})
    found = C.feature_contexts(model, {1: tc}, ev, nodes, k=2)
    assert list(found) == [(1, 0)]  # once per feature; layer 3 has no transcoder
    assert found[(1, 0)].activation.tolist() == [8.0, 7.0]  # the sink (9.0) left out
    assert found[(1, 0)].context[0] == "<4>[[<5>]]<6><7>"


def test_later_minus_earlier_averages_over_the_starts():
    logit = pd.DataFrame([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]], index=["L1.F1", "L2.F2"],
                         columns=["0", "1", "2", "3"])
    sides = [([2, 3], [0, 1]), ([3], [0, 1, 2])]  # later 2.5 - 0.5 = 2; then 3 - 1 = 2
    assert C.later_minus_earlier(logit, sides).tolist() == [2.0, -2.0]
    assert C.later_minus_earlier(logit, []).isna().all()


def test_greater_than_account_names_the_top_units_in_order():
    heads = pd.DataFrame({"layer": [4, 5, 6, 7], "unit": [2, 1, 0, 3], "attribution": [0.1, -0.5, 0.3, 0.05]})
    features = pd.DataFrame({"layer": [20, 21, 22], "unit": [94, 341, 5], "attribution": [0.2, 1.0, -0.4],
                             "label": ["reads 17 → writes 8|9", "reads from → writes 5", "reads x → writes 1"]})
    later = pd.Series({"L20.F94": 0.5, "L21.F341": 0.7, "L22.F5": -0.2})
    table, sentence = C.greater_than_account(heads, features, later, k=2)
    assert table.unit.tolist() == ["L5.H1", "L6.H0", "L21.F341", "L22.F5"]
    assert table["later − earlier"].tolist()[2:] == [0.7, -0.2]
    order = [sentence.index(name) for name in table.unit]
    assert order == sorted(order)
    assert "L21.F341 [reads from → writes 5] (+1.00; +0.70 later − earlier: boosts later years)" in sentence
    assert "L22.F5 [reads x → writes 1] (-0.40; -0.20 later − earlier: boosts earlier years)" in sentence
    assert "1 of the 2 top features boost later years" in sentence
    assert "features hold 64% of these 4 units' |attribution|, heads 36%" in sentence  # 1.4 vs 0.8
    assert C.HANNA_ACCOUNT in sentence


def test_greater_than_account_without_units_says_so():
    empty = pd.DataFrame(columns=["layer", "unit", "attribution", "label"])
    table, sentence = C.greater_than_account(empty, empty, pd.Series(dtype=float))
    assert table.empty and "no head reads the start year's digits" in sentence
    assert "no feature at the last position" in sentence and "no unit has any attribution" in sentence


@pytest.mark.parametrize("k", [1, 3])
def test_greater_than_account_keeps_at_most_k_of_each(k):
    heads = pd.DataFrame({"layer": range(5), "unit": range(5), "attribution": np.linspace(0.1, 0.5, 5)})
    features = heads.assign(label="l")
    table, _ = C.greater_than_account(heads, features, pd.Series(dtype=float), k=k)
    assert (table.kind == "head").sum() == k and (table.kind == "feature").sum() == k
    assert table.attribution.tolist()[:k] == sorted(heads.attribution, reverse=True)[:k]


@pytest.mark.parametrize("kind", ["target", "tc_bias", "embed", "error"])
def test_nodes_without_a_unit_get_a_tooltip(kind):
    """Roots, biases and merged errors carry no unit (NaN once the graph is a table, as path_search
    leaves it); only features and heads name one."""
    row = pd.Series({"kind": kind, "layer": 2.0, "pos": 3.0, "unit": np.nan, "src": np.nan,
                     "attribution": 0.25}, name=f"{kind} node")
    head = C.node_tooltip(row, TOKENS).split("\n")[0]
    assert head and "nan" not in head.lower()
