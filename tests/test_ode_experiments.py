"""Unit tests of utils.ode_experiments (notebook 05's harness: presets, configs, runner, tables) on
tiny models (CPU, seconds). The parts it runs have their own tests: test_ode_models,
test_ode_benchmarks, test_ode_comparisons."""

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import torch

from tests.test_ode_benchmarks import small_lm_benchmark
from tests.test_ode_blocks import TINY, one_thread  # noqa: F401  (the thread-count fixture)
from utils import ode_blocks as ob
from utils import ode_experiments as ex
from utils.training import TrainConfig

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "05_neural_ode_layers.ipynb"


def test_runner_caches_runs_and_compare_reports_noise():
    bench = small_lm_benchmark()
    runner = ex.Runner(
        ob.ODEConfig(**TINY), {"lm": TrainConfig(steps=3, batch_size=4, eval_every=3)}, patch=2
    )
    per_seed = dict.fromkeys([0, 1], bench)
    runs = runner.run(per_seed, [ex.Variant("sequential"), ex.Variant("parallel")], desc="test")
    assert len(runs) == 4 and len(runner.results) == 4
    again = runner.run(per_seed, [ex.Variant("parallel")], desc="test")
    pd.testing.assert_frame_equal(
        again.reset_index(drop=True), runs[runs.kind == "parallel"].reset_index(drop=True)
    )
    summary = ex.summarize(runs)
    assert list(summary.kind) == ["sequential", "parallel"] and (summary.seeds == 2).all()
    shown = ex.show_summary(summary, ["kind", "params", "metric_mean", "cpu_s"]).data
    assert list(shown.columns) == ["scheme", "parameters", "test metric (mean)", "CPU per run"]
    with pytest.raises(KeyError, match="no header"):
        ex.show_summary(summary, ["wall_s"])
    family = ex.compare_family(
        runs, ex.Variant("sequential"), [ex.Variant("parallel")], "metric", higher_is_better=False
    )
    comparison = family["parallel"]
    assert 0.0 <= comparison["p_value"] <= 1.0 and comparison["p_holm"] == comparison["p_value"]
    assert comparison["n"] == 2 and comparison["low"] <= comparison["gain"] <= comparison["high"]


def test_runs_do_not_depend_on_the_number_of_worker_processes():
    bench = small_lm_benchmark()
    per_seed = dict.fromkeys([0, 1], bench)
    variants = [ex.Variant("sequential"), ex.Variant("rk2", share=2)]
    tables = []
    for workers in (1, 2):
        runner = ex.Runner(
            ob.ODEConfig(**TINY),
            {"lm": TrainConfig(steps=4, batch_size=4, eval_every=2)},
            patch=2,
            workers=workers,
        )
        tables.append(runner.run(per_seed, variants, desc=f"{workers} workers"))
    columns = ["kind", "share", "seed", "metric", "test_loss", "val_loss", "steps", "params"]
    pd.testing.assert_frame_equal(tables[0][columns], tables[1][columns])


def test_runner_refuses_bad_workers_and_unavailable_devices():
    cfgs = {"lm": TrainConfig(steps=2)}
    with pytest.raises(ValueError, match="workers and threads must be >= 1"):
        ex.Runner(ob.ODEConfig(**TINY), cfgs, patch=2, workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use device='cpu'"):
            ex.Runner(ob.ODEConfig(**TINY), cfgs, patch=2, device="cuda")


def test_configs_come_from_the_presets():
    for sizes in ex.PRESETS.values():
        cfg = ex.model_config(sizes)
        assert (cfg.d_model, cfg.n_layers) == (sizes["d_model"], sizes["n_layers"])
        train = ex.train_configs(sizes)
        assert train["image"].steps == sizes["image_steps"] and train["lm"].lr == sizes["lm_lr"]
        assert train["image"].warmup_steps == max(1, sizes["image_steps"] // 10)
        assert all(sizes["n_layers"] % share == 0 for share in sizes["share_groups"])


def test_every_name_the_notebook_uses_is_exported():
    source = "\n".join(
        cell.source
        for cell in nbformat.read(NOTEBOOK, as_version=4).cells
        if cell.cell_type == "code"
    )
    for alias, module in (("ex", ex), ("ob", ob)):
        used = set(re.findall(rf"\b{alias}\.(\w+)", source))
        assert used and used <= set(module.__all__), used - set(module.__all__)
