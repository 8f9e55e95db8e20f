import math

import pytest

from tests.notebook_runner import run_smoke
from utils import verdicts
from utils.transcoders import shipped_recipe


@pytest.mark.notebook
def test_notebook_03_runs_and_reports(tmp_path):
    m = run_smoke("03", tmp_path)
    layers = m["parameters"]["tc_layers"]
    assert [row["layer"] for row in m["per_layer"]] == layers
    for row in m["per_layer"]:
        assert 0 <= row["l0"] <= m["parameters"]["d_sae"] and row["fvu"] >= 0 and row["ce_loss"] > 0
        assert row["kl"] >= -1e-3 and 0 <= row["dead_frac"] <= 1 and math.isfinite(row["delta_ce"])
    assert 0 < m["dead_counted_over_tokens"] <= m["parameters"]["n_dead_tokens"]  # dead: over the longer count
    assert {row["l1"] for row in m["l1_sweep"]} == set(m["parameters"]["l1_grid"])
    assert m["parameters"]["l1_live"] in m["parameters"]["l1_grid"]  # the sweep's choice, for the layers trained here
    # the smoke run loads the shipped transcoders (its layers are among them) and trains only the sweep's layers
    assert m["transcoders_from"] == "shipped" and m["live_layers"] == m["parameters"]["sweep_layers"]
    assert m["shipped"]["complete"]
    assert any(shipped_recipe(m["shipped"]) in line for line in m["deviations"])  # the shipped recipe is named
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
    assert m["source"] == "prose"  # human-written text by default
    assert [row["layer"] for row in m["per_layer_own_text"]] == layers  # the model's own text, beside
    assert m["ce_own_text"]["clean"] > 0
    effects = gt["window_effects"]
    assert gt["window_effect"] == max(effects.values()) and int(min(effects, key=int)) == 0
    assert gt["circuit_window"][0] == int(max(effects, key=effects.get))  # the largest joint fall
    rows = m["paper_vs_here"]
    assert all(set(verdicts.CLAIM_COLUMNS) <= set(row) for row in rows)
    assert all(row["verdict"] in verdicts.WORDS for row in rows), [row["verdict"] for row in rows]
    window_row = next(row for row in rows if row["claim"].startswith("few transcoder features"))
    assert (window_row["verdict"] == verdicts.NOT_TESTABLE) == (gt["window_effect"] < 0.05)
    assert [row["result"] for row in m["checks"]] == [verdicts.PASSES]  # completeness, an identity
    spliced = m["quality_intervals"]["all_spliced_delta_ce"]  # the splice claim's interval, over sequences
    assert spliced["low"] <= spliced["estimate"] <= spliced["high"]
    assert abs(spliced["estimate"] - (m["ce"]["all_spliced"] - m["ce"]["clean"])) < 1e-3
    assert set(m["figures"]) == {
        f"{n}.png"
        for n in ("layer_quality", "l1_sweep", "greater_than", "circuit", "features", "window", "top_k",
                  "invariant")
    }
