import math

import pytest

from tests.notebook_runner import run_smoke

VERDICT_WORDS = ("holds", "within noise", "differs", "fails", "too few", "identity")


@pytest.mark.notebook
def test_notebook_03_runs_and_reports(tmp_path):
    m = run_smoke("03", tmp_path)
    layers = m["parameters"]["tc_layers"]
    assert [row["layer"] for row in m["per_layer"]] == layers
    for row in m["per_layer"]:
        assert 0 <= row["l0"] <= m["parameters"]["d_sae"] and row["fvu"] >= 0 and row["ce_loss"] > 0
        assert row["kl"] >= -1e-3 and 0 <= row["dead_frac"] <= 1 and math.isfinite(row["delta_ce"])
    assert {row["l1"] for row in m["l1_sweep"]} == set(m["parameters"]["l1_grid"])
    assert m["parameters"]["l1"] in m["parameters"]["l1_grid"]
    ce = m["ce"]
    assert 0 < ce["clean"] < 20 and ce["all_spliced"] > 0 and ce["all_zero_ablated"] > 0 and ce["all_spliced_kl"] >= -1e-3
    assert m["completeness_max_error"] < 1e-3  # the attribution identity holds on the real model
    assert all(0 <= share <= 1 for share in m["error_share"])
    gt = m["greater_than"]
    assert -1 <= gt["model"] <= 1 and -1 <= gt["transcoders"] <= 1 and 0 <= gt["positive_share"] <= 1
    assert [row["k"] for row in gt["top_k"]] == m["parameters"]["top_ks"]
    assert all(-1 <= row["features"] <= 1 and -1 <= row["neurons"] <= 1 for row in gt["top_k"])
    assert len(gt["circuit_window"]) == m["parameters"]["circuit_layers"]
    assert set(gt["precision_at_k"]) == {"features", "features, random", "neurons", "neurons, random"}
    assert len(m["top_heads"]) > 0 and len(m["top_features"]) > 0
    assert m["invariant_correlation"] is None or -1 <= m["invariant_correlation"] <= 1
    assert m["blind_case"]["n"] <= m["parameters"]["n_blind"]
    verdicts = [row["verdict"] for row in m["paper_vs_here"]]
    assert all(v.startswith(VERDICT_WORDS) for v in verdicts), verdicts
    assert any(v == "identity" for v in verdicts)  # completeness is reported as an identity
    assert set(m["figures"]) == {
        f"{n}.png"
        for n in ("layer_quality", "l1_sweep", "greater_than", "circuit", "features", "top_k", "invariant")
    }
