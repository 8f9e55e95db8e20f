"""Notebook 05 at smoke scale: it runs end to end, its metrics.json has what it promises, and a
second run with the same seed gives identical numbers."""

import math

import pytest

from tests.notebook_runner import run_smoke
from utils.ode_blocks import BLOCK_KINDS, SCHEME_ORDER
from utils.ode_experiments import PRESETS
from utils.verdicts import CHECK_COLUMNS, CLAIM_COLUMNS, PASSES, WORDS

pytestmark = pytest.mark.notebook
SMOKE = PRESETS["smoke"]
RUN_KEY = ("experiment", "benchmark", "kind", "share", "seed")
REPRODUCED = ("metric", "test_loss", "val_loss", "steps", "best_step", "params")


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
        "power",
        "sequential_vs_parallel",
        "sequential_vs_parallel_test_nll",
        "weight_sharing",
        "integrators_vs_euler",
        "lm_curves",
        "integration_orders",
        "paper_vs_here",
        "checks",
        "implemented",
        "not_implemented",
        "deviations",
        "figures",
    ):
        assert key in metrics, key
    assert metrics["scale"] == "smoke" and metrics["notebook"] == "05_neural_ode_layers"
    assert metrics["figures"] and all((metrics["folder"] / f).is_file() for f in metrics["figures"])
    assert any("time embedding" in d for d in metrics["deviations"])
    # the character LM reads human-written prose by default, not the model's own text
    assert metrics["parameters"]["lm_source"] == "prose" and metrics["lm_text"] == "human prose"


def test_every_run_is_reported_per_benchmark_variant_and_seed(metrics):
    runs = metrics["runs"]
    seen = {tuple(r[k] for k in RUN_KEY) for r in runs}
    assert len(seen) == len(runs)
    for bench, n_seeds in (("image", SMOKE["seeds"]), ("lm", SMOKE["lm_seeds"])):
        for kind in ("sequential", "parallel"):
            seeds = {
                r["seed"]
                for r in runs
                if r["experiment"] == "sequential_vs_parallel"
                and r["benchmark"] == bench
                and r["kind"] == kind
            }
            assert len(seeds) == n_seeds
    for r in runs:
        budget = SMOKE["image_steps"] if r["benchmark"] == "image" else SMOKE["lm_steps"]
        assert 1 <= r["steps"] <= budget and r["best_step"] <= r["steps"]
        assert r["params"] > 0 and r["cpu_s"] > 0 and r["train_gflops_per_step"] > 0
        assert r["test_loss"] > 0
        if r["benchmark"] == "image":
            assert 0.0 <= r["metric"] <= 1.0
        else:
            # bits per character: at most one bit worse than guessing uniformly
            assert 0.0 < r["metric"] < math.log2(metrics["lm_vocab_size"]) + 1
            assert r["metric"] == pytest.approx(r["test_loss"] / math.log(2))


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
    assert {r["share"] for r in runs} == {1, max(SMOKE["share_groups"])}  # per layer and shared
    orders = metrics["integration_orders"]
    assert set(orders) == set(BLOCK_KINDS)
    assert all(abs(orders[k] - SCHEME_ORDER[k]) < 0.25 for k in BLOCK_KINDS)


def test_significance_and_paper_vs_here(metrics):
    comparisons = [
        *metrics["sequential_vs_parallel"].values(),
        *metrics["sequential_vs_parallel_test_nll"].values(),
        metrics["weight_sharing"],
        *(c for family in metrics["integrators_vs_euler"].values() for c in family.values()),
    ]
    for test in comparisons:
        assert 0.0 <= test["p_value"] <= test["p_holm"] <= 1.0 and test["sd_gain"] >= 0
        assert test["low"] <= test["gain"] <= test["high"]
    table = metrics["paper_vs_here"]
    assert len(table) == 5  # the papers' claims only: identities and contracts are checks
    assert all(set(row) == set(CLAIM_COLUMNS) for row in table)
    assert all(row["verdict"] in WORDS and row["here"] and row["rule"] for row in table)
    assert all(row["n"] == SMOKE["seeds"] or row["verdict"] == "too few" for row in table)
    checks = metrics["checks"]
    assert len(checks) == 2 and all(set(r) == set(CHECK_COLUMNS) for r in checks)
    assert all(r["result"] == PASSES for r in checks)


def test_a_second_run_with_the_same_seed_gives_identical_metrics(metrics, tmp_path):
    again = run_smoke("05", tmp_path, workers=1)  # one process this time: results must not depend on it
    key = lambda r: tuple(r[k] for k in RUN_KEY)  # noqa: E731
    first = {key(r): tuple(r[k] for k in REPRODUCED) for r in metrics["runs"]}
    second = {key(r): tuple(r[k] for k in REPRODUCED) for r in again["runs"]}
    assert first == second
    assert [r["verdict"] for r in again["paper_vs_here"]] == [
        r["verdict"] for r in metrics["paper_vs_here"]
    ]
