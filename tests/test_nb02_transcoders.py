import math

import pytest

from tests.notebook_runner import run_smoke


@pytest.mark.notebook
def test_notebook_02_runs_and_reports(tmp_path):
    m = run_smoke("02", tmp_path)
    assert 0 < m["clean_ce"] < 20 and 0 < m["zero_ablation_ce"] < 30
    dicts = m["dictionaries"]
    assert {d["kind"] for d in dicts} == {"transcoder", "sae"} and len(
        dicts
    ) == 4  # smoke: 2 L1 values each
    for d in dicts:
        assert set(d) >= {"l0", "fvu", "ce_loss", "frac_recovered", "dead_frac", "dense_frac"}
        assert 0 <= d["l0"] <= m["parameters"]["d_sae"] and d["fvu"] >= 0 and d["ce_loss"] > 0
        assert 0 <= d["dead_frac"] <= 1 and 0 <= d["dense_frac"] <= 1
        assert d["frac_recovered"] is None or math.isfinite(d["frac_recovered"])
    assert m["hooked_sae_transformer_splice_max_diff"] < 1e-3
    assert {row["verdict"] for row in m["paper_vs_here"]} <= {
        "holds",
        "differs",
        "fails",
        "not comparable (no L0 overlap)",
        "comparable (proxy)",
        "TC higher (proxy)",
        "SAE higher (proxy)",
    }
    assert set(m["figures"]) == {"training_curves.png", "pareto.png", "activation_histograms.png"}
    assert (tmp_path / "02_transcoders" / "pareto.png").is_file()
