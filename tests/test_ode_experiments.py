"""Unit tests of utils.ode_experiments (models, benchmarks, runner, comparisons) on tiny models (CPU, seconds)."""

import pandas as pd
import pytest
import torch

from tests.test_ode_blocks import TINY, one_thread  # noqa: F401  (the thread-count fixture)
from utils import ode_blocks as ob
from utils import ode_experiments as ex
from utils.training import TrainConfig


def test_vit_and_lm_shapes():
    cfg = ob.ODEConfig(**TINY)
    vit = ex.TinyViT(cfg, image_size=8, channels=1, patch=2, n_classes=10)
    assert vit(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    lm = ex.CharLM(cfg, vocab_size=20, ctx=12)
    assert lm(torch.randint(0, 20, (3, 12))).shape == (3, 12, 20)
    with pytest.raises(ValueError, match="exceeds the context"):
        lm(torch.randint(0, 20, (1, 13)))
    with pytest.raises(ValueError, match="not divisible by patch"):
        ex.TinyViT(cfg, image_size=8, channels=1, patch=3, n_classes=10)


def test_digits_splits_are_disjoint_and_complete():
    bench = ex.digits_benchmark(seed=0)
    sizes = {k: len(v) for k, v in bench.labels.items()}
    assert sum(sizes.values()) == 1797 and min(sizes.values()) > 200
    train = bench.images["train"]
    assert train.shape[1:] == (1, 8, 8)
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std()) - 1) < 1e-5


def test_char_benchmark_vocabulary_and_unknown_characters():
    bench = ex.char_benchmark("abcabcabc" * 20, "abz" * 20, ctx=8)
    assert bench.vocab == ex.UNKNOWN_CHAR + "abc"
    assert int(bench.ids["validation"][2]) == 0  # 'z' is unknown
    assert len(bench.ids["validation"]) + len(bench.ids["test"]) == 60
    with pytest.raises(ValueError, match="too short"):
        ex.char_benchmark("abc", "abc", ctx=8)
    with pytest.raises(ValueError, match="lm_source must be"):
        ex.lm_benchmark("wikipedia", 100, 100, 8)


def test_synthetic_text_is_seeded():
    assert (
        ex.synthetic_text(500, seed=3)
        == ex.synthetic_text(500, seed=3)
        != ex.synthetic_text(500, seed=4)
    )
    assert len(ex.synthetic_text(500)) == 500


def test_unknown_image_dataset_is_refused():
    with pytest.raises(ValueError, match="image_source must be one of"):
        ex.image_benchmark("mnist")


def test_cifar100_offline_gives_a_clear_error(monkeypatch, tmp_path):
    from utils.data import DataUnavailableError

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(DataUnavailableError, match="image_source='digits'"):
        ex.cifar100_benchmark()


def small_lm_benchmark() -> ex.CharBenchmark:
    return ex.lm_benchmark("synthetic", 4000, 1200, ctx=16)


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
    family = ex.compare_family(
        runs, ex.Variant("sequential"), [ex.Variant("parallel")], "metric", higher_is_better=False
    )
    comparison = family["parallel"]
    assert 0.0 <= comparison["p_value"] <= 1.0 and comparison["p_holm"] == comparison["p_value"]
    assert comparison["n"] == 2 and comparison["low"] <= comparison["gain"] <= comparison["high"]
    with pytest.raises(ValueError, match="at least 2 seeds"):
        ex.paired_comparison(
            runs[runs.seed == 0], ex.Variant("sequential"), ex.Variant("parallel"), "metric", False
        )


def paired_runs(gains: dict[str, list[float]]) -> pd.DataFrame:
    """Runs of a baseline at 0.5 and of each variant at 0.5 + its per-seed gains."""
    rows = [{"kind": "parallel", "share": 1, "seed": s, "metric": 0.5} for s in range(8)]
    for kind, values in gains.items():
        rows += [
            {"kind": kind, "share": 1, "seed": s, "metric": 0.5 + g} for s, g in enumerate(values)
        ]
    return pd.DataFrame(rows)


def test_comparisons_are_paired_by_seed():
    # seed-to-seed swings are large, but each seed moves by exactly +0.01: a paired test sees it
    base = [0.1 * s for s in range(8)]
    rows = [{"kind": "parallel", "share": 1, "seed": s, "metric": b} for s, b in enumerate(base)]
    rows += [{"kind": "rk2", "share": 1, "seed": s, "metric": b + 0.01} for s, b in enumerate(base)]
    family = ex.compare_family(
        pd.DataFrame(rows), ex.Variant("parallel"), [ex.Variant("rk2")], "metric", True
    )
    assert family["rk2"]["p_value"] == 0.0 and family["rk2"]["gain"] == pytest.approx(0.01)
    lower = ex.compare_family(
        pd.DataFrame(rows), ex.Variant("parallel"), [ex.Variant("rk2")], "metric", False
    )
    assert lower["rk2"]["gain"] == pytest.approx(-0.01)  # lower is better: the gain changes sign


def test_verdict_rule_uses_holm_across_a_family():
    noisy = [0.02, -0.012, 0.03, 0.0, 0.025, 0.005, 0.015, 0.02]
    runs = paired_runs(
        {"rk2": noisy, "rk4": [-0.05 + 0.001 * s for s in range(8)], "strang": [0.0] * 8}
    )
    family = ex.compare_family(
        runs,
        ex.Variant("parallel"),
        [ex.Variant(k) for k in ("strang", "rk2", "rk4")],
        "metric",
        True,
    )
    assert all(c["p_holm"] >= c["p_value"] for c in family.values())
    assert (
        family["rk2"]["p_value"] < 0.05 < family["rk2"]["p_holm"]
    )  # significant alone, not after Holm
    assert ex.verdict(family["rk2"]).startswith("within noise (n=8")
    assert ex.verdict(family["rk4"]).startswith("fails (n=8")
    assert ex.verdict(family["strang"]).startswith("within noise")
    assert ex.family_verdict(family) == ("rk4", ex.verdict(family["rk4"]))
    assert ex.verdict({**family["rk2"], "n": 3}).startswith("too few: n=3")


def test_seeds_needed_reaches_the_power_and_a_floor():
    n = ex.seeds_needed(effect=0.01, sd=0.01)
    assert n >= ex.MIN_SEEDS
    assert ex.stats.paired_power(0.01, 0.01, n) >= ex.POWER
    assert ex.seeds_needed(effect=1.0, sd=0.01) == ex.MIN_SEEDS


def test_corpus_loader_joins_documents_and_truncates(monkeypatch):
    import utils.data

    docs = {
        "train": ["first doc.", "second doc.", "third doc."],
        "validation": ["held out text."] * 4,
    }
    monkeypatch.setattr(utils.data, "corpus_texts", lambda split="train": iter(docs[split]))
    assert ex.corpus_text("train", 15) == "first doc.\nseco"
    bench = ex.lm_benchmark("corpus", 1000, 40, ctx=4)
    assert len(bench.ids["train"]) == len("\n".join(docs["train"]))
    assert len(bench.ids["validation"]) + len(bench.ids["test"]) == 40


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
