"""Skipping sublayers on models with norms after a sublayer: a tiny random Gemma-3 and OLMo 2."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights

from utils import gemma, hooks, models
from utils.model_layouts import install_fast_blocks
from utils.pruning.diagnostic import refit_data, refit_errors
from utils.pruning.pruned_model import (
    Checkpoints,
    final_logits,
    original_down_projections,
    restore_dense,
)
from utils.pruning.sprint import SprintScorer, apply_norms, pre_norm_target, relative_l1
from utils.sublayers import SkippableBlock, Sublayer, skipping, sublayer, supports_skipping

N_SUBLAYERS = 6  # tiny_gemma3's 3 layers: local, local, global


@pytest.fixture(scope="module")
def ids():
    """Token ids longer than the tiny model's sliding window, so local and global layers differ."""
    return torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def converted(ids):
    """The tiny Gemma-3 converted as load_model converts it, and its logits before the fast blocks."""
    torch.set_grad_enabled(False)
    hf_model = gemma.tiny_gemma3(seed=4)
    model, _ = models.convert_hf(
        hf_model, None, models.gemma3_config(hf_model.config, 32), convert_gemma_weights
    )
    assert model.cfg.use_normalization_before_and_after
    before = model(ids)
    return install_fast_blocks(model).eval(), before


def test_gemma_gets_fast_blocks_that_run_as_transformer_lens(converted, ids):
    model, before = converted
    assert supports_skipping(model) and all(isinstance(b, SkippableBlock) for b in model.blocks)
    torch.testing.assert_close(model(ids), before, atol=1e-5, rtol=1e-5)
    with skipping(model, []):
        torch.testing.assert_close(model(ids), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("index", range(N_SUBLAYERS))
def test_skipping_a_gemma_sublayer_equals_zeroing_its_write(converted, ids, index):
    model, _ = converted
    s = sublayer(index)
    zeroed = model.run_with_hooks(ids, fwd_hooks=hooks.zero_ablate([s]))
    with skipping(model, [s]):
        skipped = model(ids)
    torch.testing.assert_close(skipped, zeroed, atol=1e-5, rtol=1e-5)
    assert (skipped - model(ids)).abs().max() > 1e-3  # the sublayer mattered


def test_skipping_several_gemma_sublayers_equals_zeroing_their_writes(converted, ids):
    model, _ = converted
    chosen = [Sublayer(0, "mlp"), Sublayer(1, "attn"), Sublayer(2, "mlp")]
    zeroed = model.run_with_hooks(ids, fwd_hooks=hooks.zero_ablate(chosen))
    with skipping(model, chosen):
        torch.testing.assert_close(model(ids), zeroed, atol=1e-5, rtol=1e-5)


def test_a_skipped_gemma_sublayer_runs_neither_of_its_norms(converted, ids):
    model, _ = converted
    block, calls = model.blocks[1], []
    for name in ("ln1", "ln1_post"):
        getattr(block, name).hook_scale.add_hook(lambda act, hook, name=name: calls.append(name))
    try:
        with skipping(model, [Sublayer(1, "attn")]):
            model(ids)
        assert calls == []
        with skipping(model, [Sublayer(1, "mlp")]):
            model(ids)
        assert calls == ["ln1", "ln1_post"]
    finally:
        model.reset_hooks()


def test_olmo2_post_norm_blocks_skip_too():
    """OLMo 2/3 apply ln1/ln2 after their sublayer instead of before (TransformerLens's POST_NORM_ARCHITECTURES)."""
    config = {
        **models.tiny_config(seed=5),
        "normalization_type": "RMS",
        "original_architecture": "Olmo2ForCausalLM",
    }
    model = HookedTransformer(HookedTransformerConfig(**config))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".w"):  # norm weights away from 1, so a misplaced norm shows
                param.copy_(
                    1 + 0.5 * torch.randn(param.shape, generator=torch.Generator().manual_seed(6))
                )
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(7))
    before = model(tokens)
    install_fast_blocks(model).eval()
    assert supports_skipping(model)
    torch.testing.assert_close(model(tokens), before, atol=1e-5, rtol=1e-5)
    for s in [Sublayer(0, "attn"), Sublayer(1, "mlp")]:
        zeroed = model.run_with_hooks(tokens, fwd_hooks=hooks.zero_ablate([s]))
        with skipping(model, [s]):
            torch.testing.assert_close(model(tokens), zeroed, atol=1e-5, rtol=1e-5)


def _boundaries(model, ids) -> list[torch.Tensor]:
    """The residual stream before each sublayer and after the last, from the model's own hooks."""
    _, cache = model.run_with_cache(ids)
    return [
        cache[f"blocks.{layer}.hook_resid_{where}"]
        for layer in range(model.cfg.n_layers)
        for where in ("pre", "mid")
    ] + [cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]]


def test_pruning_checkpoints_on_gemma_are_the_models_residual_stream(converted, ids):
    """SPRINT's, SLEB's and ShortGPT's sublayer-by-sublayer residuals apply the post-norms too."""
    model, _ = converted
    for skipped in ([], [Sublayer(1, "attn")]):
        with skipping(model, skipped):
            pairs = zip(Checkpoints(model, ids).resid, _boundaries(model, ids), strict=True)
            for got, want in pairs:
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gemma", "llama"])
def test_sprint_tuned_score_is_the_sensitivity_after_the_commit(converted, ids, family):
    """SPRINT's tuned score must be what the model computes once the refit W_out is committed, also
    where a norm follows the MLP (Gemma's ln2_post, through which W_out is no longer linear)."""
    model = converted[0] if family == "gemma" else models.tiny_model(seed=8)
    originals = original_down_projections(model)
    try:
        for index in (0, 2):  # attention before a local and before the global layer
            scorer = SprintScorer(Checkpoints(model, ids % model.cfg.d_vocab), ridge=0.1)
            cand = scorer.tuned(index)
            stop = cand.next_mlp + 1
            y = scorer.cp.resid[stop].clone()
            scorer.commit(cand)
            actual = relative_l1(y, scorer.cp.resid[stop])
            assert cand.tuned_sensitivity == pytest.approx(actual, rel=1e-4, abs=1e-5)
            restore_dense(model, originals)
    finally:
        restore_dense(model, originals)


def test_refit_diagnostic_scores_gemma_tuning_as_the_commit_does(converted, ids):
    model, _ = converted
    scorer = SprintScorer(Checkpoints(model, ids), ridge=0.1)
    data = refit_data(scorer, 0)
    errors = refit_errors(data, data, 0.1)
    assert errors["tuned_in"] == pytest.approx(
        scorer.tuned(0).tuned_sensitivity / len(ids), rel=1e-5
    )


def test_pre_norm_target_undoes_an_rms_norm_at_the_current_scale(converted):
    norm = converted[0].blocks[0].ln2_post
    g = torch.Generator().manual_seed(5)
    current, z = torch.randn(2, 7, 32, generator=g), torch.randn(2, 7, 32, generator=g)
    rms = lambda x: x.pow(2).mean(-1, keepdim=True).sqrt()  # noqa: E731
    z = z * rms(current) / rms(z)  # an input with the current write's RMS: the norm's output pins it down
    torch.testing.assert_close(pre_norm_target([norm], current, norm(z) - norm(current)), z, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pre_norm_target([], current, z - current), z)  # no norm: the input moves by it
    assert torch.equal(apply_norms([norm], z), norm(z))
    with pytest.raises(NotImplementedError, match="RMSNorm"):
        pre_norm_target([torch.nn.LayerNorm(32)], current, z)


def test_refit_through_gemmas_post_norm_lowers_the_in_sample_error(converted):
    """Fitting W_out to the shortfall carried back through ln2_post must help on the fitted tokens
    (fitting it to the shortfall in the norm's output space, as for Llama, made them worse)."""
    model, _ = converted
    tokens = torch.randint(0, 97, (12, 20), generator=torch.Generator().manual_seed(6))
    scorer = SprintScorer(Checkpoints(model, tokens), ridge=0.0)
    for index in (0, 1, 2):
        errors = refit_errors(refit_data(scorer, index), refit_data(scorer, index), 0.01)
        assert errors["tuned_in"] < 0.85 * errors["untuned_in"]  # the naive target: 0.91-0.93 here


def test_pruning_logits_from_the_residual_apply_gemmas_final_soft_cap(ids):
    hf_model = gemma.tiny_gemma3(seed=4, final_logit_softcapping=5.0)
    fields = models.gemma3_config(hf_model.config, 32)
    model = install_fast_blocks(models.convert_hf(hf_model, None, fields, convert_gemma_weights)[0])
    logits = final_logits(model, Checkpoints(model, ids).resid[-1])
    assert logits.abs().max() <= 5.0
    torch.testing.assert_close(logits, model(ids), atol=1e-5, rtol=1e-5)
