import math

import pytest

from tests.notebook_runner import run_smoke

VERDICT_WORDS = ("holds", "within noise", "differs", "fails", "too few", "identity")


@pytest.mark.notebook
def test_notebook_02_runs_and_reports(tmp_path):
    m = run_smoke("02", tmp_path)
    assert 0 < m["clean_ce"] < 20 and 0 < m["zero_ablation_ce"] < 30
    dicts = m["dictionaries"]
    assert {d["kind"] for d in dicts} == {"transcoder", "sae"} and len(dicts) == 4  # smoke: 2 L1 values each
    for d in dicts:
        assert set(d) >= {"l0", "fvu", "ce_loss", "delta_ce", "kl", "frac_recovered", "dead_frac", "dense_frac"}
        assert 0 <= d["l0"] <= m["parameters"]["d_sae"] and d["fvu"] >= 0 and d["ce_loss"] > 0 and d["kl"] >= -1e-3
        assert 0 <= d["dead_frac"] <= 1 and 0 <= d["dense_frac"] <= 1
        assert d["frac_recovered"] is None or math.isfinite(d["frac_recovered"])
    assert 0 < m["n_train_tokens_kept"] < m["parameters"]["n_train_tokens"]  # attention sinks were dropped
    assert m["hooked_sae_transformer_splice_max_diff"] < 1e-3
    verdicts = [row["verdict"] for row in m["paper_vs_here"]]
    assert all(v.startswith(VERDICT_WORDS) for v in verdicts), verdicts
    assert set(m["figures"]) == {"training_curves.png", "pareto.png", "activation_histograms.png"}
    assert (tmp_path / "02_transcoders" / "pareto.png").is_file() or any(tmp_path.rglob("pareto.png"))
