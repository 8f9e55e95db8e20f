"""Notebook 05 at smoke scale: it runs end to end and its metrics.json has what it promises."""

import math

import pytest

from tests.notebook_runner import run_smoke
from utils.ode_blocks import BLOCK_KINDS, PRESETS, SCHEME_ORDER

pytestmark = pytest.mark.notebook
SMOKE = PRESETS["smoke"]
VERDICTS = ("holds", "fails", "within noise")


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    result = run_smoke("05", root)
    result["folder"] = root / "05_neural_ode_layers"
    return result


def test_metrics_keys_and_figures(metrics):
    for key in (
        "notebook",
        "scale",
        "model",
        "parameters",
        "runs",
        "summary",
        "sequential_vs_parallel",
        "integrators_vs_euler",
        "integration_orders",
        "paper_vs_here",
        "implemented",
        "not_implemented",
        "deviations",
        "figures",
    ):
        assert key in metrics, key
    assert metrics["scale"] == "smoke" and metrics["notebook"] == "05_neural_ode_layers"
    assert metrics["figures"] and all((metrics["folder"] / f).is_file() for f in metrics["figures"])


def test_every_run_is_reported_per_task_variant_and_seed(metrics):
    runs = metrics["runs"]
    seen = {(r["experiment"], r["task"], r["kind"], r["share"], r["seed"]) for r in runs}
    assert len(seen) == len(runs)
    for task in ("image", "lm"):
        for kind in ("sequential", "parallel"):
            seeds = {
                r["seed"]
                for r in runs
                if r["experiment"] == "sequential_vs_parallel"
                and r["task"] == task
                and r["kind"] == kind
            }
            assert len(seeds) == SMOKE["seeds"]
    for r in runs:
        budget = SMOKE["image_steps"] if r["task"] == "image" else SMOKE["lm_steps"]
        assert 1 <= r["steps"] <= budget and r["best_step"] <= r["steps"]
        assert r["params"] > 0 and r["wall_s"] > 0 and r["train_gflops_per_step"] > 0
        if r["task"] == "image":
            assert 0.0 <= r["metric"] <= 1.0
        else:
            # bits per character: at most one bit worse than guessing uniformly
            assert 0.0 < r["metric"] < math.log2(metrics["lm_vocab_size"]) + 1


def test_sharing_shrinks_the_parameter_count(metrics):
    sweep = sorted(
        (r["share"], r["params"]) for r in metrics["runs"] if r["experiment"] == "weight_sharing"
    )
    params = [p for _, p in dict(sweep).items()]
    assert [s for s, _ in dict(sweep).items()] == SMOKE["share_groups"]
    assert all(a > b for a, b in zip(params, params[1:], strict=False))


def test_integrators_cost_more_evaluations_and_orders_match(metrics):
    runs = [r for r in metrics["runs"] if r["experiment"] == "integrators"]
    calls = {r["kind"]: r["sublayer_calls_per_layer"] for r in runs}
    assert calls["parallel"] < calls["rk2"] < calls["rk4"]
    orders = metrics["integration_orders"]
    assert set(orders) == set(BLOCK_KINDS)
    assert all(abs(orders[k] - SCHEME_ORDER[k]) < 0.25 for k in BLOCK_KINDS)


def test_significance_and_paper_vs_here(metrics):
    for test in [
        *metrics["sequential_vs_parallel"].values(),
        *metrics["integrators_vs_euler"].values(),
    ]:
        assert 0.0 <= test["p_value"] <= 1.0 and test["seed_std"] >= 0
    table = metrics["paper_vs_here"]
    assert len(table) == 5
    assert all(row["verdict"].startswith(VERDICTS) and row["here"] for row in table)
