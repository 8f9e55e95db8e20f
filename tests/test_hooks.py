import pytest
import torch

from utils import hooks
from utils.sublayers import Sublayer


def test_capture_is_a_no_op_and_stores(tiny, tokens):
    store = {}
    out = tiny.run_with_hooks(tokens, fwd_hooks=hooks.capture(["blocks.0.hook_mlp_out"], store))
    assert torch.equal(out, tiny(tokens))
    assert store["blocks.0.hook_mlp_out"].shape == (*tokens.shape, tiny.cfg.d_model)


def test_zero_and_mean_ablation_change_the_output(tiny, tokens):
    s = Sublayer(0, "mlp")
    means = hooks.sublayer_means(tiny, tokens, [s])
    assert means[s.out_hook].shape == (tiny.cfg.d_model,)
    base = tiny(tokens)
    for fwd in (hooks.zero_ablate([s]), hooks.mean_ablate([s], means)):
        assert not torch.allclose(tiny.run_with_hooks(tokens, fwd_hooks=fwd), base)
    with pytest.raises(KeyError, match="sublayer_means"):
        hooks.mean_ablate([Sublayer(1, "mlp")], means)


def test_blocking_no_edges_is_exact(tiny, tokens):
    mask = torch.zeros(tokens.shape[1], tokens.shape[1], dtype=torch.bool)
    out = tiny.run_with_hooks(tokens, fwd_hooks=hooks.block_attention(range(tiny.cfg.n_layers), mask))
    assert torch.equal(out, tiny(tokens))


def test_blocking_every_edge_from_a_position_removes_its_influence(tiny, tokens):
    n, p = tokens.shape[1], 4
    mask = hooks.edge_mask(n, [(dst, p) for dst in range(p + 1, n)])
    fwd = hooks.block_attention(range(tiny.cfg.n_layers), mask)
    changed = tokens.clone()
    changed[:, p] = (changed[:, p] + 1) % tiny.cfg.d_vocab
    a = tiny.run_with_hooks(tokens, fwd_hooks=fwd)[:, -1]
    b = tiny.run_with_hooks(changed, fwd_hooks=fwd)[:, -1]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(tiny(tokens)[:, -1], tiny(changed)[:, -1])  # without blocking it matters


def test_per_prompt_masks_match_single_runs(tiny, tokens):
    n = tokens.shape[1]
    masks = torch.stack([hooks.edge_mask(n, [(n - 1, src)]) for src in range(3)])
    batched = tiny.run_with_hooks(tokens, fwd_hooks=hooks.block_attention([1], masks))
    for row in range(3):
        single = tiny.run_with_hooks(tokens[row : row + 1], fwd_hooks=hooks.block_attention([1], masks[row]))
        torch.testing.assert_close(batched[row], single[0], atol=1e-5, rtol=1e-5)


def test_bad_masks_are_refused(tiny, tokens):
    n = tokens.shape[1]
    with pytest.raises(ValueError, match="causal"):
        hooks.edge_mask(n, [(2, 5)])
    with pytest.raises(ValueError, match="bool"):
        hooks.block_attention([0], torch.zeros(n, n))
    everything = hooks.edge_mask(n, [(n - 1, s) for s in range(n)])
    with pytest.raises(ValueError, match="every source"):
        tiny.run_with_hooks(tokens, fwd_hooks=hooks.block_attention([0], everything))


def test_splicing_the_mlp_itself_is_exact(tiny, tokens):
    s = Sublayer(1, "mlp")
    out = tiny.run_with_hooks(tokens, fwd_hooks=hooks.splice(s, tiny.blocks[1].mlp))
    assert torch.equal(out, tiny(tokens))
    zero = tiny.run_with_hooks(tokens, fwd_hooks=hooks.splice(s, torch.zeros_like))
    torch.testing.assert_close(zero, tiny.run_with_hooks(tokens, fwd_hooks=hooks.zero_ablate([s])))


def test_attached_removes_only_its_own_hooks_so_interventions_nest(tiny, tokens):
    s = Sublayer(0, "mlp")
    base = tiny(tokens)
    with hooks.attached(tiny, hooks.zero_ablate([s])):
        zeroed = tiny(tokens)
        store = {}
        with hooks.attached(tiny, hooks.capture([s.out_hook], store)):
            assert torch.equal(tiny(tokens), zeroed)
        assert torch.count_nonzero(store[s.out_hook]) == 0
        assert torch.equal(tiny(tokens), zeroed)  # the inner exit left the outer hook in place
    assert torch.equal(tiny(tokens), base)
    assert not any(p.fwd_hooks for p in tiny.hook_dict.values())


def test_attached_rejects_an_unknown_hook_point_and_leaves_nothing_behind(tiny, tokens):
    with pytest.raises(KeyError, match="no hook point 'blocks.0.hook_nope'"):
        with hooks.attached(tiny, hooks.capture([hooks.resid_pre(0), "blocks.0.hook_nope"], {})):
            pass
    assert not any(p.fwd_hooks for p in tiny.hook_dict.values())


def test_replace_writes_with_the_real_write_is_exact_and_keep_real_guards_positions(tiny, tokens):
    s = Sublayer(1, "attn")
    base = tiny(tokens)
    assert torch.equal(hooks.run(tiny, tokens, hooks.replace_writes({s: lambda x, real: real})), base)
    everywhere = torch.ones(tokens.shape, dtype=torch.bool)
    zero = {s: lambda x, real: torch.zeros_like(real)}
    assert torch.equal(hooks.run(tiny, tokens, hooks.replace_writes(zero, keep_real=everywhere)), base)
    assert torch.equal(
        hooks.run(tiny, tokens, hooks.replace_writes(zero)), hooks.run(tiny, tokens, hooks.zero_ablate([s]))
    )


def test_hook_names_are_the_models_own():
    assert hooks.resid_pre(3) == "blocks.3.hook_resid_pre"
    assert hooks.attn_scores(2) == "blocks.2.attn.hook_attn_scores"
    assert hooks.attn_point(2, "v") == "blocks.2.attn.hook_v"
    assert hooks.mlp_post(1) == "blocks.1.mlp.hook_post"
    assert hooks.norm_scale(4, "mlp") == "blocks.4.ln2.hook_scale"
    assert hooks.norm_scale(None) == "ln_final.hook_scale"


def test_layer_of_reads_the_block_back(tiny):
    assert hooks.layer_of(hooks.resid_pre(3)) == 3
    assert hooks.layer_of(Sublayer(2, "mlp").out_hook) == 2
    assert hooks.layer_of(hooks.embed()) is None
    assert hooks.embed() in tiny.hook_dict
