import pytest

from tests.notebook_runner import run_smoke
from utils.pruning import BASELINES, SPRINT_VARIANTS
from utils.verdicts import CHECK_COLUMNS, CLAIM_COLUMNS, PASSES, WORDS


@pytest.mark.notebook
def test_notebook_04_runs_and_reports(tmp_path):
    m = run_smoke("04", tmp_path)
    targets = m["parameters"]["targets"]
    rows = m["methods"]
    assert {r["method"] for r in rows} == set(SPRINT_VARIANTS) | set(BASELINES)
    assert {r["seed"] for r in rows} == set(m["parameters"]["calib_seeds"])
    for r in rows:
        assert r["target"] in targets and r["speedup_paper"] >= r["target"]
        assert r["perplexity"] > 1 and 0 <= r["cloze_acc"] <= 1 and -1 <= r["probe_above_chance"] <= 1
        assert r["pruning_time_s"] >= 0 and r["pruned"] and r["n_attn"] + r["n_mlp"] == len(r["pruned"])
        assert all(0 <= i < 60 for i in r["pruned"])
    for name in SPRINT_VARIANTS:  # every SPRINT variant reaches every target
        assert sorted(r["target"] for r in rows if r["method"] == name) == sorted(targets)
    lat = m["latency"]
    assert lat["dense_s"] > 0 and all(v > 0 for v in lat["per_sublayer_s"].values())
    assert lat["attn_mlp_ratio"] is None or 1 <= lat["attn_mlp_ratio"]["n"] <= m["parameters"]["latency_repeats"]
    assert m["provenance"] == "computed in this run"  # smoke recomputes everything
    diag = m["refit_diagnostic"]
    assert diag and all(d["tuned/untuned in-sample"] <= 1 + 1e-6 for d in diag)
    assert m["parameters"]["ridge"] in m["parameters"]["ridge_grid"]
    assert m["dense"]["perplexity"] > 1 and 0 <= m["dense"]["cloze_acc"] <= 1
    assert {row["method"] for row in m["closing_table"]} == set(SPRINT_VARIANTS) | set(BASELINES)
    assert m["paper_vs_here"] and all(row["verdict"] in WORDS for row in m["paper_vs_here"])
    assert all(set(CLAIM_COLUMNS) <= set(row) for row in m["paper_vs_here"])
    assert m["checks"] and all(set(CHECK_COLUMNS) <= set(row) for row in m["checks"])
    assert all(row["result"] == PASSES for row in m["checks"])
    assert m["parameters"]["source"] == "prose"  # smoke calibrates on human text, compares with the model's own
    other = m["compare_text"]
    assert other["source"] == "shipped" and other["dense"]["perplexity"] > 1
    assert {row["method"] for row in other["table"]} == {"dense"} | set(SPRINT_VARIANTS) | set(BASELINES)
    assert {"perplexity (human text)", "cloze (the model's own text)"} <= set(other["table"][0])
    matched = m["matched"]["rows"]
    assert matched and all(r["speedup_below"] <= m["matched"]["speedup"] <= r["speedup_above"] for r in matched)
    assert set(m["figures"]) == {"latency_model.png", "refit_diagnostic.png", "pruning_time.png",
                                 "accuracy_vs_speedup.png", "removed_sublayers.png", "first_step.png"}
    assert (tmp_path / "04_sprint_pruning" / "accuracy_vs_speedup.png").is_file()
