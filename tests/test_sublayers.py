import pytest
import torch

from utils import hooks
from utils.models import tiny_model
from utils.sublayers import Sublayer, all_sublayers, set_skipped, skipped_now, skipping, sublayer


def test_flat_index_round_trip(tiny):
    subs = all_sublayers(tiny)
    assert [s.index for s in subs] == list(range(2 * tiny.cfg.n_layers))
    assert sublayer(3) == Sublayer(1, "mlp") and sublayer(2) == Sublayer(1, "attn")
    with pytest.raises(ValueError, match=">= 0"):
        sublayer(-1)


def test_skipping_nothing_is_the_original_model(tiny, tokens):
    reference = tiny(tokens)
    with skipping(tiny, []):
        assert torch.equal(tiny(tokens), reference)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_skipping_equals_zeroing_the_write(tiny, tokens, index):
    s = sublayer(index)
    zeroed = tiny.run_with_hooks(tokens, fwd_hooks=hooks.zero_ablate([s]))
    with skipping(tiny, [s]):
        skipped = tiny(tokens)
    torch.testing.assert_close(skipped, zeroed, atol=1e-5, rtol=1e-5)
    assert skipped_now(tiny) == []


def test_skipped_sublayer_is_not_computed(tiny, tokens):
    calls = []
    tiny.blocks[1].mlp.hook_pre.add_hook(lambda act, hook: calls.append(1))
    try:
        with skipping(tiny, [Sublayer(1, "mlp")]):
            tiny(tokens)
        assert calls == []
        tiny(tokens)
        assert calls == [1]
    finally:
        tiny.reset_hooks()


def test_parallel_block_skips_too(tokens):
    model = tiny_model(seed=3)
    model.cfg.parallel_attn_mlp = True  # the block reads the flag at call time
    try:
        zeroed = model.run_with_hooks(tokens, fwd_hooks=hooks.zero_ablate([Sublayer(0, "attn")]))
        with skipping(model, [Sublayer(0, "attn")]):
            torch.testing.assert_close(model(tokens), zeroed, atol=1e-5, rtol=1e-5)
    finally:
        model.cfg.parallel_attn_mlp = False


def test_out_of_range_sublayer_is_refused(tiny):
    with pytest.raises(ValueError, match="out of range"):
        set_skipped(tiny, [Sublayer(7, "mlp")])
