import math

import pytest

from tests.notebook_runner import run_smoke


@pytest.mark.notebook
def test_notebook_03_runs_and_reports(tmp_path):
    m = run_smoke("03", tmp_path)
    layers = m["parameters"]["tc_layers"]
    assert [row["layer"] for row in m["per_layer"]] == layers
    for row in m["per_layer"]:
        assert (
            0 <= row["l0"] <= m["parameters"]["d_sae"] and row["fvu"] >= 0 and row["ce_spliced"] > 0
        )
    ce = m["ce"]
    assert 0 < ce["clean"] < 20 and ce["all_spliced"] > 0 and ce["all_zero_ablated"] > 0
    assert m["completeness_max_error"] < 1e-3  # the attribution identity holds on the real model
    gt = m["greater_than"]
    assert (
        -1 <= gt["model"] <= 1 and -1 <= gt["transcoders"] <= 1 and 0 <= gt["positive_share"] <= 1
    )
    assert [row["k"] for row in gt["top_k"]] == m["parameters"]["top_ks"]
    assert all(-1 <= row["features"] <= 1 and -1 <= row["neurons"] <= 1 for row in gt["top_k"])
    assert len(m["top_heads"]) > 0 and len(m["top_features"]) > 0
    assert m["invariant_correlation"] is None or -1 <= m["invariant_correlation"] <= 1
    assert m["blind_case"]["hypothesis"].startswith("L")
    assert m["blind_case"]["hit_rate"] is None or not math.isnan(m["blind_case"]["hit_rate"])
    assert {row["verdict"] for row in m["paper_vs_here"]} <= {"holds", "differs", "fails"}
    assert set(m["figures"]) == {
        f"{n}.png"
        for n in ("layer_quality", "greater_than", "circuit", "features", "top_k", "invariant")
    }
