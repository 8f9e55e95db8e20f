import torch

from utils import tour


def test_residual_stream_is_the_sum_of_all_writes(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens)
    assert len(tour.residual_components(tiny, cache)) == 1 + 2 * tiny.cfg.n_layers
    assert tour.decomposition_error(tiny, cache) < 1e-5


def test_direct_logit_attribution_adds_up_to_the_logit(tiny, tokens):
    logits, cache = tiny.run_with_cache(tokens)
    token = int(logits[0, -1].argmax())
    dla = tour.direct_logit_attribution(tiny, cache, token)
    assert abs(dla.sum() + float(tiny.b_U[token]) - float(logits[0, -1, token])) < 1e-4


def test_logit_lens_at_the_last_layer_is_the_model_output(tiny, tokens, monkeypatch):
    monkeypatch.setattr(tiny, "to_string", lambda t: str(int(t)))  # the tiny model has no tokenizer
    logits, cache = tiny.run_with_cache(tokens[:1])
    token = int(logits[0, -1].argmax())
    lens = tour.logit_lens(tiny, cache, token)
    assert list(lens["layer"]) == list(range(tiny.cfg.n_layers))
    last = lens.iloc[-1]
    assert abs(last["prob"] - float(logits[0, -1].softmax(-1)[token])) < 1e-5 and last["rank"] == 1


def test_write_norms_are_positive_per_layer_and_sublayer(tiny, tokens):
    norms = tour.sublayer_write_norms(tiny, [tokens, tokens[:1]])
    assert norms.shape == (tiny.cfg.n_layers, 3)
    assert (norms[["attn", "mlp"]] > 0).all().all()
    assert torch.isfinite(torch.tensor(norms[["attn", "mlp"]].values)).all()
