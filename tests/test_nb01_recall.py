import pytest

from tests.notebook_runner import run_smoke

KNOCKOUT_CURVES = {"subject → last", "non-subject → last", "last → last"}
POSITIONS = {"first token", "first subject", "last subject", "first after subject", "last token"}


@pytest.mark.notebook
@pytest.mark.embedded
def test_notebook_01_smoke(tmp_path):
    m = run_smoke("01", tmp_path)
    n_layers = 30
    counts = m["facts"]
    assert counts["candidates"] >= counts["known"] >= counts["used"] == m["facts_used"] > 0
    assert counts["skipped_no_subject_span"] >= 0
    assert set(m["knockout_minima"]) == KNOCKOUT_CURVES
    for curve in m["knockout_minima"].values():
        assert 0 <= curve["layer"] < n_layers and curve["min_change_pct"] >= -100
    assert set(m["attributes_rate_peaks"]) == POSITIONS
    for peak in m["attributes_rate_peaks"].values():
        assert 0 <= peak["rate"] <= 1 and 0 <= peak["layer"] < n_layers
        assert -1 <= peak["specific"] <= 1 and 0 <= peak["specific_layer"] < n_layers
    assert 0 <= m["attributes_rate_embedding_baseline"] <= 1
    assert set(m["enrichment_early_drop"]) == {"mlp", "attn"}
    assert all(-1 <= d <= 1 for d in m["enrichment_early_drop"].values())
    for shares in (m["extraction_shares"], m["extraction_shares_subject_blocked"]):
        assert set(shares) == {"attn_share", "mlp_share"} and all(
            0 <= v <= 1 for v in shares.values()
        )
    assert 0 <= m["ov_hit_rate_top_heads"] <= 1 and 0 <= m["ov_hit_rate_control_heads"] <= 1
    rows = m["paper_vs_here"]
    assert len(rows) == 9 and all(r["verdict"] in ("holds", "differs") for r in rows)
    assert set(m["figures"]) == {
        f"{name}.png"
        for name in (
            "knockout_curves",
            "attributes_rate",
            "enrichment_knockout",
            "extraction_rates",
            "ov_heads",
        )
    }
    assert all((tmp_path / "01_dissecting_recall" / f).is_file() for f in m["figures"])
