import pytest

from tests.notebook_runner import run_smoke
from utils.verdicts import CHECK_COLUMNS, PASSES, WORDS


@pytest.mark.notebook
def test_notebook_00_runs_and_reports(tmp_path):
    m = run_smoke("00", tmp_path)
    assert m["decomposition_max_error"] < 1e-4
    assert m["noop_hook_identical"] is True and m["skip_vs_zero_max_diff"] < 1e-4
    assert m["prediction"].strip() == "Paris"
    assert len(m["logit_lens"]) == 30 and all(0 <= r["prob"] <= 1 for r in m["logit_lens"])
    for key in ("write_norms", "write_norms_own_text"):  # human prose, and the model's own text
        assert len(m[key]) == 30 and all(r["attn"] > 0 and r["mlp"] > 0 for r in m[key])
    assert 0 <= m["mlp_larger_share"] <= 1 and 0 <= m["mlp_larger_share_own_text"] <= 1
    assert "prose" in m["norm_text"]
    # a tour tests no paper claim: its identities and contracts are checks, never claims
    assert m["paper_vs_here"] == [] or {r["verdict"] for r in m["paper_vs_here"]} <= set(WORDS)
    assert len(m["checks"]) == 4 and all(set(r) == set(CHECK_COLUMNS) for r in m["checks"])
    assert all(r["result"] == PASSES for r in m["checks"])
    assert set(m["figures"]) == {"direct_logit_attribution.png", "logit_lens.png", "write_norms.png"}
    assert (tmp_path / "00_sublayers_tour" / "logit_lens.png").is_file()
