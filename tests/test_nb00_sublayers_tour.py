import pytest

from tests.notebook_runner import run_smoke


@pytest.mark.notebook
def test_notebook_00_runs_and_reports(tmp_path):
    m = run_smoke("00", tmp_path)
    assert m["decomposition_max_error"] < 1e-4
    assert m["noop_hook_identical"] is True and m["skip_vs_zero_max_diff"] < 1e-4
    assert m["prediction"].strip() == "Paris"
    assert len(m["logit_lens"]) == 30 and all(0 <= r["prob"] <= 1 for r in m["logit_lens"])
    assert len(m["write_norms"]) == 30 and all(r["attn"] > 0 and r["mlp"] > 0 for r in m["write_norms"])
    assert {row["verdict"] for row in m["paper_vs_here"]} <= {"holds", "differs", "fails"}
    assert set(m["figures"]) == {"direct_logit_attribution.png", "logit_lens.png", "write_norms.png"}
    assert (tmp_path / "00_sublayers_tour" / "logit_lens.png").is_file()
