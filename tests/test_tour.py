import matplotlib.pyplot as plt
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


def test_library_decomposition_matches_the_hooks_it_reads(tiny, tokens):
    _, cache = tiny.run_with_cache(tokens)
    components = tour.residual_components(tiny, cache)
    hooks = ["hook_embed"] + [
        f"blocks.{i}.hook_{k}_out" for i in range(tiny.cfg.n_layers) for k in ("attn", "mlp")
    ]
    assert list(components)[:3] == ["embed", "L0.attn", "L0.mlp"]
    assert all(torch.equal(c, cache[h]) for c, h in zip(components.values(), hooks, strict=True))


def test_library_logit_attribution_matches_the_linearised_formula(tiny, tokens):
    logits, cache = tiny.run_with_cache(tokens)
    token, pos = int(logits[0, 2].argmax()), 2
    dla = tour.direct_logit_attribution(tiny, cache, token, pos)
    scale = cache["ln_final.hook_scale"][0, pos]
    for name, write in tour.residual_components(tiny, cache).items():
        assert abs(dla[name] - float(write[0, pos] @ tiny.W_U[:, token] / scale)) < 1e-5


def test_library_logit_lens_matches_decoding_each_layer(tiny, tokens, monkeypatch):
    monkeypatch.setattr(tiny, "to_string", lambda t: str(int(t)))
    _, cache = tiny.run_with_cache(tokens[:1])
    lens = tour.logit_lens(tiny, cache, token=5, pos=4)
    for layer in range(tiny.cfg.n_layers):
        logits = tour.decode_residual(tiny, cache[f"blocks.{layer}.hook_resid_post"][:, 4])[0]
        assert abs(lens.prob[layer] - float(logits.softmax(-1)[5])) < 1e-6
        assert lens.top_token[layer] == str(int(logits.argmax()))


def test_toolbox_interventions_keep_their_contracts(tiny, tokens):
    one = tokens[:1]
    logits = tiny(one)
    frame, noop_same, skip_vs_zero = tour.toolbox_interventions(
        tiny, one, logits, answer=3, layer=1
    )
    assert noop_same and skip_vs_zero < 1e-4
    assert list(frame.columns) == ["intervention", "p(answer)"] and len(frame) == 4
    assert frame["p(answer)"].iloc[0] == float(logits[0, -1].softmax(-1)[3])
    assert frame["p(answer)"].between(0, 1).all()


def test_attribution_plot_labels_every_layer(tiny, tokens):
    logits, cache = tiny.run_with_cache(tokens)
    dla = tour.direct_logit_attribution(tiny, cache, int(logits[0, -1].argmax()))
    fig, ax = plt.subplots()
    tour.plot_attribution(
        ax, dla, {"attn": "tab:blue", "mlp": "tab:orange"}, {"attn": "attention", "mlp": "MLP"}
    )
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"layer {i}" for i in range(tiny.cfg.n_layers)]
    assert len(ax.patches) == 2 * tiny.cfg.n_layers
    plt.close(fig)
