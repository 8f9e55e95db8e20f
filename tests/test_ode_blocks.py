"""Unit tests of utils.ode_blocks (the method: fields, stacks, integrators) on tiny stacks (CPU, seconds)."""

import math

import pytest
import torch

from utils import ode_blocks as ob

TINY = dict(d_model=16, n_heads=2, d_mlp=32, n_layers=4)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and the thread count is part of reproducibility)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stack(kind: str, share: int = 1, causal: bool = True, seed: int = 0, **kw) -> ob.ODEStack:
    torch.manual_seed(seed)
    return ob.ODEStack(ob.ODEConfig(**{**TINY, **kw}, kind=kind, share=share, causal=causal)).eval()


@pytest.fixture
def x():
    return torch.randn(2, 7, TINY["d_model"], generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ob.BLOCK_KINDS)
def test_every_kind_keeps_the_shape_and_is_causal(kind, x):
    model = stack(kind)
    with torch.no_grad():
        out = model(x)
        changed = x.clone()
        changed[:, 4:] += torch.randn_like(changed[:, 4:])
        out_changed = model(changed)
    assert out.shape == x.shape
    assert torch.equal(out[:, :4], out_changed[:, :4])  # a future token cannot change the past
    assert not torch.allclose(out[:, 4:], out_changed[:, 4:])


def test_non_causal_stack_lets_the_future_in(x):
    model = stack("parallel", causal=False)
    with torch.no_grad():
        changed = x.clone()
        changed[:, -1] += torch.randn_like(changed[:, -1])
        assert not torch.allclose(model(x)[:, 0], model(changed)[:, 0])


def test_parallel_layer_equals_the_formula_by_hand(x):
    model = stack("parallel", n_layers=1, step=1.0)
    field = model.fields[0]
    ln, att, mlp = field.norms[0], field.attention, field.feedforward
    h = torch.nn.functional.layer_norm(x, (TINY["d_model"],), ln.weight, ln.bias, ln.eps)
    b, n, d = h.shape
    q, k, v = (h @ att.qkv.weight.T + att.qkv.bias).split(d, dim=-1)
    heads = lambda t: t.view(b, n, 2, d // 2).transpose(1, 2)
    scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(d // 2)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    attn = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(
        b, n, d
    ) @ att.out.weight.T + att.out.bias
    mlp_out = (
        torch.nn.functional.gelu(h @ mlp.up.weight.T + mlp.up.bias) @ mlp.down.weight.T
        + mlp.down.bias
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), x + attn + mlp_out, atol=1e-5, rtol=1e-5)


def test_sequential_layer_applies_attention_then_mlp(x):
    model = stack("sequential", n_layers=1, step=0.5)
    f = model.fields[0]
    with torch.no_grad():
        y = x + 0.5 * f.attention(f.norms[0](x))
        torch.testing.assert_close(model(x), y + 0.5 * f.feedforward(f.norms[1](y)))


def test_fused_parallel_field_matches_the_separate_one(x):
    field = stack("parallel", n_layers=1).fields[0]
    fused = ob.FusedParallelField(field)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), x + field.both(x, 0.0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ob.BLOCK_KINDS)
def test_schemes_converge_at_their_order_on_a_linear_field(kind):
    field = ob.random_linear_field(dim=4, seed=1)
    x0 = torch.ones(1, 4, dtype=torch.float64)
    errors = ob.integration_errors(field, x0, steps=(8, 16, 32, 64))
    order = ob.observed_orders(errors)[kind]
    assert abs(order - ob.SCHEME_ORDER[kind]) < 0.25, f"{kind}: observed order {order:.2f}"
    mine = errors[errors.kind == kind].sort_values("steps")["error"].to_numpy()
    assert (mine[1:] < mine[:-1]).all()  # halving h always shrinks the error


def test_higher_order_schemes_are_more_accurate_at_equal_steps():
    errors = ob.integration_errors(
        ob.random_linear_field(seed=2), torch.ones(1, 4, dtype=torch.float64), steps=(16,)
    )
    e = errors.set_index("kind")["error"]
    assert e["rk4"] < e["rk2"] < e["parallel"]


@pytest.mark.parametrize("kind", ob.BLOCK_KINDS)
@pytest.mark.parametrize("share", [1, 2, 4])
def test_shared_stacks_have_the_expected_parameter_count(kind, share):
    cfg = ob.ODEConfig(**TINY, kind=kind, share=share)
    model = ob.ODEStack(cfg)
    assert ob.n_parameters(model) == ob.stack_parameters(cfg)
    assert len(model.fields) == TINY["n_layers"] // share


def test_sharing_counts_by_hand():
    d, m, n = TINY["d_model"], TINY["d_mlp"], TINY["n_layers"]
    per_layer = 4 * d * d + 4 * d + 2 * d * m + m + d
    seq = ob.ODEConfig(**TINY, kind="sequential")
    assert ob.n_parameters(ob.ODEStack(seq)) == n * (per_layer + 4 * d)
    one = ob.ODEConfig(**TINY, kind="parallel", share=n)
    assert (
        ob.n_parameters(ob.ODEStack(one)) == per_layer + 2 * d + (n + 1) * d
    )  # one field + time table


def test_shared_field_is_one_module_reused(x):
    model = stack("parallel", share=4)
    assert len(model.fields) == 1
    with torch.no_grad():
        model.time.table.zero_()
        direct = x
        for _ in range(4):
            direct = direct + model.fields[0].both(direct, 0.0)
        torch.testing.assert_close(model(x), direct)


def test_time_embedding_interpolates_between_layers():
    time = ob.TimeEmbedding(n_layers=2, d_model=3)
    with torch.no_grad():
        time.table.copy_(torch.tensor([[0.0] * 3, [2.0] * 3, [4.0] * 3]))
    assert torch.equal(time(1.0), torch.full((3,), 2.0))
    torch.testing.assert_close(time(1.5), torch.full((3,), 3.0))
    torch.testing.assert_close(time(2.0), torch.full((3,), 4.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="euler"), "kind must be one of"),
        (dict(share=3), "share must divide n_layers"),
        (dict(d_model=10, n_heads=4), "not divisible by n_heads"),
        (dict(step=0.0), "step size must be positive"),
    ],
)
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ob.ODEConfig(**{**TINY, **kwargs})


def test_shared_field_reads_the_time_embedding(x):
    model = stack("rk2", share=4, n_layers=4)
    with torch.no_grad():
        model.time.table.copy_(
            torch.randn(model.time.table.shape, generator=torch.Generator().manual_seed(5))
        )
        f, e = model.fields[0], model.time
        manual = x
        for layer in range(4):
            k1 = f.both(manual + e(float(layer)))
            k2 = f.both(manual + k1 + e(float(layer + 1)))
            manual = manual + (k1 + k2) / 2
        torch.testing.assert_close(model(x), manual)
