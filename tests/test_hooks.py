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
