from pathlib import Path

import pytest

from tests.notebook_runner import run_smoke
from utils.verdicts import CHECK_COLUMNS, CLAIM_COLUMNS, PASSES, WORDS

KNOCKOUT_CURVES = {"subject → last", "non-subject → last", "last → last", "first token → last"}
SUBSETS = {"subject is the first token", "subject is not the first token"}
POSITIONS = {"first token", "first subject", "last subject", "first after subject", "last token"}


@pytest.mark.notebook
@pytest.mark.embedded
def test_notebook_01_smoke(tmp_path):
    check_metrics(run_smoke("01", tmp_path), tmp_path / "01_dissecting_recall")


def check_metrics(m: dict, folder: Path) -> None:
    """The keys and ranges notebook 01's metrics.json promises."""
    n_layers = 30
    counts = m["facts"]
    assert counts["candidates"] >= counts["known"] >= counts["used"] == m["facts_used"] > 0
    assert counts["used"] == min(12, counts["known"] - counts["skipped_no_subject_span"])
    assert 0 <= m["facts_subject_first"] <= m["facts_used"]
    assert set(m["knockout_minima"]) == SUBSETS
    sizes = [next(iter(curves.values()))["n"] for curves in m["knockout_minima"].values()]
    assert sum(sizes) == m["facts_used"]
    for curves in m["knockout_minima"].values():
        assert set(curves) == KNOCKOUT_CURVES
        for curve in curves.values():
            assert 0 <= curve["layer"] < n_layers
            if curve["n"]:
                assert (
                    -100
                    <= curve["interval"]["low"]
                    <= curve["min_change_pct"]
                    <= curve["interval"]["high"]
                )
    assert set(m["attributes_rate_peaks"]) == POSITIONS
    assert 0 < m["attributes_rate_facts"] <= m["facts_used"]
    for peak in m["attributes_rate_peaks"].values():
        assert (
            0 <= peak["low"] <= peak["estimate"] <= peak["high"] <= 1
            and 0 <= peak["layer"] < n_layers
        )
        assert peak["n"] == m["attributes_rate_facts"]
    assert set(m["attributes_rate_specific_peaks"]) == {"logit lens", "tuned lens"}
    for peaks in m["attributes_rate_specific_peaks"].values():
        assert all(
            -1 <= p["estimate"] <= 1 and p["n"] == m["attributes_rate_facts"]
            for p in peaks.values()
        )
    assert m["tuned_lens_source"] == "prose"  # fitted on human-written text
    kl = m["tuned_lens_kl"]
    assert set(kl[0]) == {"layer"} | {
        f"{lens}, {text}"
        for lens in ("logit lens", "tuned lens")
        for text in ("human prose", "the model's own text")
    }
    assert len(kl) == n_layers
    assert abs(kl[-1]["tuned lens, human prose"]) < 1e-3  # the last layer reads itself
    assert m["enrichment_measure_layer"] == 25  # 0.83 of 30 layers
    assert (
        max(r["first knocked-out layer"] for r in m["enrichment_knockout"]) + 5 - 1 < 25
    )  # windows end below it
    assert set(m["enrichment_early_change"]) == {"mlp", "attn", "mlp_vs_attn"}
    for shares in (m["extraction_shares"], m["extraction_shares_subject_blocked"]):
        assert set(shares) == {"attn_share", "mlp_share"} and all(
            0 <= v <= 1 for v in shares.values()
        )
    assert 0 <= m["ov_hit_rate_top_heads"] <= 1 and 0 <= m["ov_hit_rate_control_heads"] <= 1
    rows = m["paper_vs_here"]
    assert len(rows) == 12 and all(list(r) == CLAIM_COLUMNS for r in rows)
    assert all(r["verdict"] in WORDS for r in rows)
    assert all(r["n"] is None or r["n"] <= m["facts_used"] for r in rows)
    checks = m["checks"]
    assert checks and all(list(c) == CHECK_COLUMNS and c["result"] == PASSES for c in checks)
    assert set(m["figures"]) == {
        f"{name}.png"
        for name in (
            "knockout_curves",
            "attributes_rate",
            "tuned_lens",
            "enrichment_knockout",
            "extraction_rates",
            "ov_heads",
        )
    }
    assert all((folder / f).is_file() for f in m["figures"])
