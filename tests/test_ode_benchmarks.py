"""Unit tests of utils.ode_benchmarks (notebook 05's data, losses and metrics) (CPU, seconds)."""

import pytest

from utils import ode_benchmarks as bm
from utils.data import DataUnavailableError


def small_lm_benchmark() -> bm.CharBenchmark:
    """A character benchmark on a few thousand characters of seeded toy text."""
    return bm.lm_benchmark("synthetic", 4000, 1200, ctx=16)


def test_digits_splits_are_disjoint_and_complete():
    bench = bm.digits_benchmark(seed=0)
    sizes = {k: len(v) for k, v in bench.labels.items()}
    assert sum(sizes.values()) == 1797 and min(sizes.values()) > 200
    train = bench.images["train"]
    assert train.shape[1:] == (1, 8, 8)
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std()) - 1) < 1e-5


def test_char_benchmark_vocabulary_and_unknown_characters():
    bench = bm.char_benchmark("abcabcabc" * 20, "abz" * 20, ctx=8)
    assert bench.vocab == bm.UNKNOWN_CHAR + "abc"
    assert int(bench.ids["validation"][2]) == 0  # 'z' is unknown
    assert len(bench.ids["validation"]) + len(bench.ids["test"]) == 60
    with pytest.raises(ValueError, match="too short"):
        bm.char_benchmark("abc", "abc", ctx=8)
    with pytest.raises(ValueError, match="lm_source must be"):
        bm.lm_benchmark("wikipedia", 100, 100, 8)


def test_synthetic_text_is_seeded():
    assert (
        bm.synthetic_text(500, seed=3)
        == bm.synthetic_text(500, seed=3)
        != bm.synthetic_text(500, seed=4)
    )
    assert len(bm.synthetic_text(500)) == 500


def test_unknown_image_dataset_is_refused():
    with pytest.raises(ValueError, match="image_source must be one of"):
        bm.image_benchmark("mnist")


def test_cifar100_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(DataUnavailableError, match="image_source='digits'"):
        bm.cifar100_benchmark()


def test_corpus_loader_joins_documents_and_truncates(monkeypatch):
    docs = {
        "train": ["first doc.", "second doc.", "third doc."],
        "validation": ["held out text."] * 4,
    }
    sources = []

    def texts(split="train", source="shipped"):
        sources.append(source)
        return iter(docs[split])

    monkeypatch.setattr(bm, "corpus_texts", texts)
    assert bm.corpus_text("train", 15) == "first doc.\nseco"
    bench = bm.lm_benchmark("corpus", 1000, 40, ctx=4)
    assert len(bench.ids["train"]) == len("\n".join(docs["train"]))
    assert len(bench.ids["validation"]) + len(bench.ids["test"]) == 40
    assert sources == ["shipped"] * 3
    bm.lm_benchmark("prose", 1000, 40, ctx=4)
    assert sources[3:] == ["prose", "prose"]  # human-written train and validation splits


def test_prose_benchmark_reads_human_text():
    bench = bm.lm_benchmark("prose", 20_000, 2_000, ctx=16)
    assert len(bench.ids["train"]) == 20_000
    assert len(bench.ids["validation"]) + len(bench.ids["test"]) == 2_000
    assert len(bench.vocab) > 30
