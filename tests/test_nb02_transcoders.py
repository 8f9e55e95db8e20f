import math

import pytest

from tests.notebook_runner import run_smoke
from utils.transcoders import COMPARED
from utils.verdicts import CHECK_COLUMNS, CLAIM_COLUMNS, WORDS


@pytest.mark.notebook
def test_notebook_02_runs_and_reports(tmp_path):
    m = run_smoke("02", tmp_path)
    assert 0 < m["clean_ce"] < 20 and 0 < m["zero_ablation_ce"] < 30
    assert m["source"] == "prose" and m["compare_source"] == "shipped"  # human text first
    dicts = m["dictionaries"]
    assert {d["kind"] for d in dicts} == {"transcoder", "sae"} and len(dicts) == 6  # smoke: 3 each
    for d in dicts:
        assert set(d) >= {"l0", "fvu", "ce_loss", "delta_ce", "kl", "frac_recovered", "dead_frac", "dense_frac"}
        assert {f"own_{name}" for name in COMPARED} <= set(d)  # the model's own text, beside
        assert 0 <= d["l0"] <= m["parameters"]["d_sae"] and d["fvu"] >= 0 and d["ce_loss"] > 0 and d["kl"] >= -1e-3
        assert 0 <= d["dead_frac"] <= 1 and 0 <= d["dense_frac"] <= 1
        assert d["frac_recovered"] is None or math.isfinite(d["frac_recovered"])
    assert 0 < m["n_train_tokens_kept"] < m["parameters"]["n_train_tokens"]  # attention sinks were dropped
    assert m["hooked_sae_transformer_splice_max_diff"] < 1e-3
    rows = m["paper_vs_here"]
    assert all(set(row) == set(CLAIM_COLUMNS) for row in rows)
    assert all(row["verdict"] in WORDS for row in rows), [row["verdict"] for row in rows]
    assert [set(row) for row in m["checks"]] == [set(CHECK_COLUMNS)]
    assert m["checks"][0]["result"] == "passes"
    matched = m["matched_l0"]
    assert matched["transcoders"] == 3 and matched["saes"] == 3
    assert matched["interval"] is not None or rows[0]["verdict"] == "too few"  # no overlap: too few
    assert set(m["figures"]) == {"training_curves.png", "pareto.png", "feature_density.png"}
    assert any(tmp_path.rglob("pareto.png"))
