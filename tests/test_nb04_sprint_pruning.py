import pytest

from tests.notebook_runner import run_smoke
from utils.pruning import BASELINES, SPRINT_VARIANTS


@pytest.mark.notebook
def test_notebook_04_runs_and_reports(tmp_path):
    m = run_smoke("04", tmp_path)
    targets = m["parameters"]["targets"]
    rows = m["methods"]
    assert {r["method"] for r in rows} == set(SPRINT_VARIANTS) | set(BASELINES)
    for r in rows:
        assert r["target"] in targets and r["estimated_speedup"] >= r["target"]
        assert r["measured_speedup"] > 0 and r["perplexity"] > 1 and r["pruning_time_s"] >= 0
        assert 0 <= r["avg_acc"] <= 1 and r["pruned"] and r["n_attn"] + r["n_mlp"] == len(r["pruned"])
        assert all(0 <= i < 60 for i in r["pruned"])
    for name in SPRINT_VARIANTS:  # every SPRINT variant reaches every target
        assert sorted(r["target"] for r in rows if r["method"] == name) == sorted(targets)
    lat = m["latency"]
    assert lat["dense_s"] > 0 and all(v > 0 for v in lat["per_sublayer_s"].values())
    assert all(0 < t["chance"] < 1 for t in m["dense"]["tasks"]) and m["dense"]["perplexity"] > 1
    assert set(m["pruning_time_s"]) == set(SPRINT_VARIANTS) | set(BASELINES)
    assert {row["verdict"] for row in m["paper_vs_here"]} <= {"holds", "differs", "fails"}
    assert set(m["figures"]) == {"latency_model.png", "pruning_time.png", "accuracy_vs_speedup.png", "estimate_and_pruned.png"}
    assert (tmp_path / "04_sprint_pruning" / "accuracy_vs_speedup.png").is_file()
