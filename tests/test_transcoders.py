import dataclasses
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from utils import hooks
from utils import transcoders as T
from utils.models import tiny_model
from utils.sublayers import Sublayer

MLP0, MLP1 = Sublayer(0, "mlp"), Sublayer(1, "mlp")


def relu_model(seed: int = 0) -> HookedTransformer:
    """A tiny model like utils.models.tiny_model but with a plain ReLU MLP, which a transcoder can equal."""
    cfg = HookedTransformerConfig(
        d_model=32,
        d_head=8,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=48,
        n_layers=2,
        n_ctx=32,
        d_vocab=50,
        act_fn="relu",
        normalization_type="RMSPre",
        positional_embedding_type="rotary",
        rotary_dim=8,
        final_rms=True,
        gated_mlp=False,
        default_prepend_bos=False,
        seed=seed,
    )
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for block in model.blocks:  # random non-zero biases, so the test covers them
            block.mlp.b_in.normal_()
            block.mlp.b_out.normal_(std=0.1)
    return model


def exact_transcoder(mlp) -> T.SparseTranscoder:
    """The transcoder equal to a ReLU MLP: features = neurons, rescaled so decoder rows have unit norm."""
    norms = mlp.W_out.norm(dim=1)
    tc = T.SparseTranscoder(mlp.W_in.shape[0], mlp.W_in.shape[1], mlp.W_out.shape[1])
    with torch.no_grad():
        tc.W_enc.copy_(mlp.W_in * norms)
        tc.b_enc.copy_(mlp.b_in * norms)
        tc.W_dec.copy_(mlp.W_out / norms[:, None])
        tc.b_dec.copy_(mlp.b_out)
    return tc


def windows(model, n=8, ctx=12, seed=1):
    return torch.randint(
        0, model.cfg.d_vocab, (n, ctx), generator=torch.Generator().manual_seed(seed)
    )


def toy_batches(n_steps=300, batch=128, d=16, seed=0):
    """x -> a sparse ReLU map of x: a target a transcoder can learn."""
    g = torch.Generator().manual_seed(seed)
    enc, dec = torch.randn(d, 24, generator=g), torch.randn(24, d, generator=g)
    for _ in range(n_steps):
        x = torch.randn(batch, d, generator=g)
        yield {0: (x, torch.relu(x @ enc - 1.0) @ dec)}


def test_loss_terms_match_hand_computation():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    acts = torch.tensor([[0.5, 0.0, 1.5], [2.0, 0.0, 0.0]])
    w_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])  # row norms 1, 1, 2
    losses = T.transcoder_loss(pred, target, acts, w_dec, l1=0.1)
    # squared errors per token: 4 and 25 -> mean 14.5, over d = 2
    assert losses["nmse"].item() == pytest.approx(14.5 / 2)
    # norm-weighted activations per token: 0.5 + 3.0 and 2.0 -> mean 2.75, over sqrt(d)
    assert losses["l1"].item() == pytest.approx(2.75 / 2**0.5)
    assert losses["loss"].item() == pytest.approx(14.5 / 2 + 0.1 * 2.75 / 2**0.5)


def test_a_sink_sized_token_does_not_change_the_other_tokens_loss():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    acts, w_dec = torch.rand(8, 6, generator=g), torch.randn(6, 4, generator=g)
    normal = T.transcoder_loss(pred[:7], target[:7], acts[:7], w_dec, 0.1)["loss"]
    target[7] *= 1000  # one attention-sink-sized token in the batch
    sink = T.transcoder_loss(pred[7:], target[7:], acts[7:], w_dec, 0.1)["loss"]
    mixed = T.transcoder_loss(pred, target, acts, w_dec, 0.1)["loss"]
    # each token's term is its own: the mixed batch is the token-weighted mean of the two
    assert float(mixed) == pytest.approx(float((7 * normal + sink) / 8), rel=1e-5)
    # and the scale the targets are normalised by gives the median token the norm sqrt(d), whatever a
    # few huge tokens do (a root-mean-square scale would shrink by more than 10x here)
    y = torch.randn(101, 4, generator=g)
    assert float((y * T.output_scale(y)).norm(dim=-1).median()) == pytest.approx(2.0, rel=1e-5)
    with_outliers = torch.cat([y, 1000 * torch.randn(3, 4, generator=g)])
    assert float(T.output_scale(with_outliers)) == pytest.approx(float(T.output_scale(y)), rel=0.05)


def test_learning_rate_warms_up_then_falls_linearly_over_the_last_part():
    factors = [T.lr_multiplier(s, warmup_steps=2, total_steps=10, decay_fraction=0.4) for s in range(10)]
    assert factors == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert T.lr_multiplier(50, warmup_steps=2) == 1.0  # no decay without a known length
    with pytest.raises(ValueError, match="decay_fraction"):
        T.TranscoderTraining(d_sae=4, l1=0.1, decay_fraction=1.5)


def test_sink_mask_marks_position_zero_and_special_tokens():
    tokens = torch.tensor([[5, 1, 7, 0], [3, 3, 0, 2]])
    mask = T.sink_mask(tokens, special_ids=[0])
    assert mask.tolist() == [[True, False, False, True], [True, False, True, False]]


def test_tokens_with_a_massive_residual_stream_are_sinks(tiny, tokens):
    resid = T.sink_resid(tiny, tokens)
    _, cache = tiny.run_with_cache(tokens)
    torch.testing.assert_close(resid, cache[hooks.resid_pre(T.sink_layer(tiny))])
    plain = T.model_sinks(tiny, tokens)
    assert torch.equal(plain, T.sink_mask(tokens, T.special_token_ids(tiny)))  # a random model has none
    assert torch.equal(T.model_sinks(tiny, tokens, resid), plain)
    resid = resid.clone()
    resid[1, 5] *= 50  # one token with a residual norm 50x the others'
    massive = T.model_sinks(tiny, tokens, resid)
    assert massive[1, 5] and int((massive & ~plain).sum()) == 1
    assert not T.massive_tokens(torch.zeros(0, 3)).any()


def test_splicing_keeps_the_real_write_at_sinks(tiny, tokens):
    tc = T.SparseTranscoder(32, 40, 32, seed=1)
    sinks = T.sink_mask(tokens)
    store = {}
    _, cache = tiny.run_with_cache(tokens)
    hooks.run(tiny, tokens, T.replace_mlps({1: T.transcoder_fn(tc)}, sinks) + hooks.capture([MLP1.out_hook], store))
    real, out = cache[MLP1.out_hook], store[MLP1.out_hook]
    torch.testing.assert_close(out[sinks], real[sinks])
    torch.testing.assert_close(out[~sinks], tc(cache[hooks.sublayer_input_hook(MLP1)])[~sinks])
    # with a feature mask, only the kept features write (the output bias stays)
    keep = torch.zeros(tc.d_sae, dtype=torch.bool)
    keep[:5] = True
    x = cache[hooks.sublayer_input_hook(MLP1)]
    masked = T.transcoder_fn(tc, keep)(x, real)
    torch.testing.assert_close(masked, tc.decode(tc.encode(x) * keep))


def test_out_scale_is_folded_into_the_export():
    tc = T.SparseTranscoder(8, 12, 8, seed=2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 8, generator=g), 30 * torch.randn(50, 8, generator=g)
    tc.init_from_data(x, y)
    scaled = (y * tc.out_scale).norm(dim=-1).median()
    assert float(scaled) == pytest.approx(8**0.5, rel=1e-4)
    exported = tc.to_sae_lens(layer=0)
    torch.testing.assert_close(exported(x), tc(x) / tc.out_scale, atol=1e-4, rtol=1e-4)
    norms = exported.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_epoch_batches_serve_every_token_once_per_epoch_globally_shuffled():
    acts = {0: (torch.arange(20).half()[:, None], -torch.arange(20).half()[:, None])}
    batches = list(T.epoch_batches(acts, batch_tokens=5, epochs=2, seed=0))
    assert len(batches) == 8 == T.steps_per_run(20, 5, 2)
    first = torch.cat([b[0][0] for b in batches[:4]]).flatten()
    assert sorted(first.tolist()) == list(range(20))  # the first epoch serves every token once
    every = torch.cat([b[0][0] for b in batches]).flatten()
    assert torch.equal(torch.cat([b[0][1] for b in batches]).flatten(), -every)  # pairs together
    assert every.dtype == torch.float32 and every.tolist() != sorted(every.tolist())
    with pytest.raises(ValueError, match="batch_tokens"):
        next(T.epoch_batches(acts, batch_tokens=30, epochs=1))


def test_loss_decreases_on_a_learnable_target_and_decoder_rows_stay_unit_norm():
    cfg = T.TranscoderTraining(d_sae=64, l1=1e-3, lr=3e-3, warmup_steps=10, resample_every=50)
    trainer = T.train_transcoders(toy_batches(), {"toy": (0, cfg)}, d_model=16)["toy"]
    losses = [r["nmse"] for r in trainer.history]
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5
    norms = trainer.transcoder.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def _written_step(tc, optimizer, x, y, l1):
    """Notebook 02's Exercise 2.3 as its solution writes it (the module's forward, the loss by hand)."""
    with torch.enable_grad():
        acts = tc.encode(x)
        pred = tc.decode(acts)
        d = y.shape[-1]
        nmse = (pred - y).pow(2).sum(-1).mean() / d
        loss = nmse + l1 * ((acts * tc.W_dec.norm(dim=-1)).sum(-1).mean() / d**0.5)
        optimizer.zero_grad()
        loss.backward()
    with torch.no_grad():
        grad, rows = tc.W_dec.grad, tc.W_dec
        grad -= (grad * rows).sum(1, keepdim=True) * rows
        optimizer.step()
        rows /= rows.norm(dim=1, keepdim=True)
    return loss.detach()


def test_a_training_step_passed_in_trains_exactly_what_the_trainer_does():
    cfg = T.TranscoderTraining(d_sae=48, l1=1.0, lr=0.1, warmup_steps=5, decay_fraction=0.3,
                               resample_every=10, resample_until=40)
    runs = [T.train_transcoders(toy_batches(60), {"toy": (0, cfg)}, d_model=16, total_steps=60,
                                training_step=step)["toy"] for step in (None, _written_step)]
    assert runs[0].resampled > 0 and runs[0].resampled == runs[1].resampled  # resampling was exercised
    assert runs[0].history == runs[1].history
    for (name, ours), (_, theirs) in zip(runs[0].transcoder.named_parameters(),
                                         runs[1].transcoder.named_parameters(), strict=True):
        assert torch.equal(ours, theirs), name


def test_a_training_step_passed_in_is_not_called_on_a_nan_batch():
    calls = []
    trainer = T.TranscoderTrainer(T.TranscoderTraining(d_sae=8, l1=0.0), layer=0, d_in=16, d_out=16,
                                  training_step=lambda *args: calls.append(args))
    x, y = next(toy_batches())[0]
    trainer.init_from_data(x, y)
    with pytest.raises(T.TrainingDiverged, match="no checkpoint was written yet"):
        trainer.step(x * float("nan"), y)
    assert calls == []

def test_biases_start_at_the_data_means():
    batch = next(toy_batches())[0]
    trainer = T.TranscoderTrainer(
        T.TranscoderTraining(d_sae=8, l1=0.0, lr=1e-12), layer=0, d_in=16, d_out=16
    )
    trainer.step(*batch)
    tc = trainer.transcoder
    torch.testing.assert_close(tc.b_pre.detach(), batch[0].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        tc.b_dec.detach() / tc.out_scale, batch[1].mean(0), atol=1e-5, rtol=1e-5
    )


def test_resampling_revives_dead_features():
    trainer = T.TranscoderTrainer(
        T.TranscoderTraining(d_sae=16, l1=0.0, resample_every=0), layer=0, d_in=16, d_out=16
    )
    x, y = next(toy_batches())[0]
    trainer.step(x, y)
    with torch.no_grad():
        trainer.transcoder.b_enc[:4] = -1e6  # features 0..3 can never fire
    trainer.fired.zero_()
    trainer.step(x, y)
    assert trainer.resample_dead(x, y, trainer.transcoder(x).detach()) >= 4
    assert (trainer.transcoder.encode(x)[:, :4] > 0).any()
    norms = trainer.transcoder.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_resampling_more_dead_features_than_tokens_makes_no_copies():
    trainer = T.TranscoderTrainer(
        T.TranscoderTraining(d_sae=32, l1=0.0, resample_every=0), layer=0, d_in=16, d_out=16
    )
    x, y = next(toy_batches())[0]
    x, y = x[:5], y[:5]  # 5 tokens, 32 dead features
    trainer.fired.zero_()
    assert trainer.resample_dead(x, y, torch.zeros_like(y)) == 5
    revived = trainer.transcoder.W_dec[:5]
    assert len(torch.unique(revived, dim=0)) == 5
    assert trainer.resample_dead(x, y, torch.zeros_like(y)) == 5  # the rest are revived at later checks


def test_splicing_a_transcoder_equal_to_the_mlp_reproduces_the_logits():
    model = relu_model()
    tokens = windows(model)
    tc = exact_transcoder(model.blocks[1].mlp)
    spliced = hooks.run(model, tokens, hooks.splice(MLP1, tc))
    torch.testing.assert_close(spliced, model(tokens), atol=1e-5, rtol=1e-5)
    # ... and the same through sae-lens: exported Transcoder spliced by HookedSAETransformer
    wrapped = T.sae_transformer(model)
    wrapped.add_sae(tc.to_sae_lens(layer=1))
    torch.testing.assert_close(wrapped(tokens), model(tokens), atol=1e-5, rtol=1e-5)
    wrapped.reset_saes()


@pytest.mark.parametrize(("skip", "k"), [(False, None), (True, None), (False, 5), (True, 5)])
def test_save_load_round_trip_through_sae_lens(tmp_path, tiny, tokens, skip, k):
    tc = T.SparseTranscoder(32, 40, 32, seed=3, skip=skip, k=k)
    with torch.no_grad():
        tc.b_pre.normal_()
        tc.b_enc.normal_()
        tc.b_dec.normal_()
        if skip:  # a skip path, in training units: the export folds the output scale into it
            tc.W_skip.normal_(std=0.1)
            tc.out_scale.fill_(2.5)
        if k:  # a threshold that silences some ReLU-positive features; the export scales it too
            tc.threshold.fill_(0.5)
    T.save_transcoder(tc, layer=1, folder=tmp_path / "tc", model_name="tiny")
    loaded = T.load_transcoder(tmp_path / "tc")
    assert loaded.cfg.metadata.hook_name == hooks.sublayer_input_hook(MLP1)
    assert loaded.cfg.metadata.hook_name_out == MLP1.out_hook
    assert loaded.cfg.apply_b_dec_to_input is False
    x = torch.randn(20, 32)
    real = lambda out: out / tc.out_scale  # noqa: E731  (ours predicts in training units)
    torch.testing.assert_close(loaded(x), real(tc(x)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded.encode(x), tc.encode(x) / tc.out_scale, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(T.prediction(loaded, x, loaded.encode(x)), loaded(x), atol=1e-5, rtol=1e-5)
    assert type(loaded).__name__ == ("JumpReLU" if k else "") + ("Skip" if skip else "") + "Transcoder"
    if k:
        assert 0 < (tc.encode(x) > 0).sum() < (torch.relu(tc.preactivations(x)) > 0).sum()
    # HookedSAETransformer splices the loaded transcoder where our splice hook does; sae-lens 6.54 splices
    # with decode(encode(x)) only, so for a skip transcoder it leaves the skip path out (ours keeps it)
    ours = hooks.run(tiny, tokens, hooks.splice(MLP1, loaded))
    wrapped = T.sae_transformer(tiny)
    wrapped.add_sae(loaded)
    without_skip = hooks.run(tiny, tokens, hooks.splice(MLP1, lambda x: loaded.decode(loaded.encode(x))))
    torch.testing.assert_close(wrapped(tokens), without_skip, atol=1e-5, rtol=1e-5)
    assert torch.allclose(ours, without_skip) != skip
    with pytest.raises(FileNotFoundError, match="save_transcoder"):
        T.load_transcoder(tmp_path / "nothing")


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    def batches():
        for step, batch in enumerate(toy_batches(n_steps=10)):
            if step == 5:
                batch[0][1][0, 0] = float("nan")
            yield batch

    cfg = T.TranscoderTraining(d_sae=16, l1=1e-3, checkpoint_every=2, checkpoint_dir=str(tmp_path))
    with pytest.raises(T.TrainingDiverged, match=r"step 5.*last good checkpoint is .*last_good"):
        T.train_transcoders(batches(), {"a": (0, cfg)}, d_model=16)
    folder = tmp_path / T.CHECKPOINT_NAME
    assert (folder / "step.txt").read_text() == "4"
    loaded = T.load_transcoder(folder)
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_stream_stops_early_and_matches_the_full_forward(tiny):
    tokens = windows(tiny, n=3, ctx=10, seed=2)
    ((out_tokens, sinks, pairs),) = list(T.stream_activations(tiny, [0], [tokens]))
    _, cache = tiny.run_with_cache(tokens)
    assert torch.equal(sinks, T.model_sinks(tiny, tokens))
    torch.testing.assert_close(pairs[0][0], cache[hooks.sublayer_input_hook(MLP0)])
    torch.testing.assert_close(pairs[0][1], cache[MLP0.out_hook])
    with pytest.raises(ValueError, match="layers"):
        next(T.stream_activations(tiny, [5], [tokens]))


def test_shuffled_serves_every_token_once_in_a_new_order():
    chunks = [
        {0: (torch.arange(i, i + 10).float()[:, None], -torch.arange(i, i + 10).float()[:, None])}
        for i in range(0, 100, 10)
    ]
    batches = list(T.shuffled(chunks, batch_tokens=8, buffer_tokens=32, seed=0))
    xs = torch.cat([b[0][0] for b in batches]).flatten()
    ys = torch.cat([b[0][1] for b in batches]).flatten()
    assert sorted(xs.tolist()) == list(range(100))
    assert torch.equal(ys, -xs)  # pairs stay together
    assert xs.tolist() != list(range(100))
    assert all(len(b[0][0]) == 8 for b in batches[:-1])
    with pytest.raises(ValueError, match="buffer_tokens"):
        next(T.shuffled(chunks, batch_tokens=8, buffer_tokens=4))


def test_disk_cache_round_trip_without_sinks(tmp_path, tiny):
    tokens = windows(tiny, n=8, ctx=6, seed=4)
    folder = T.cache_activations(tiny, [0, 1], [tokens[:4], tokens[4:]], tmp_path / "acts")
    acts = T.load_activations(folder, [1])
    sinks = T.model_sinks(tiny, tokens)
    _, cache = tiny.run_with_cache(tokens)
    torch.testing.assert_close(
        acts[1][1].float(), cache[MLP1.out_hook][~sinks], atol=1e-2, rtol=1e-2
    )
    collected = T.collect_activations(tiny, [0, 1], [tokens[:4], tokens[4:]])  # the same, without the disk
    assert torch.equal(collected[1][0], acts[1][0]) and torch.equal(collected[1][1], acts[1][1])
    with pytest.raises(ValueError, match="cache_activations"):
        T.load_activations(folder, [3])
    chunks = list(T.cached_chunks(folder, [1], epochs=1, windows_per_chunk=8))
    _, cache = tiny.run_with_cache(tokens)
    torch.testing.assert_close(
        chunks[0][1][1].float(), cache[MLP1.out_hook], atol=1e-2, rtol=1e-2
    )
    with pytest.raises(ValueError, match="cache_activations"):
        next(T.cached_chunks(folder, [3]))


def test_losses_from_a_cached_layer_equal_the_full_model(tiny):
    tokens = windows(tiny)
    ev = T.eval_set(tiny, [1], [tokens[:4], tokens[4:]])
    clean = T.replaced_losses(tiny, ev)
    assert clean["ce"] == pytest.approx(float(tiny(tokens, return_type="loss")), abs=1e-5)
    assert clean["kl"] == pytest.approx(0.0, abs=1e-5)
    assert ev.clean_ce == pytest.approx(clean["ce"], abs=1e-5)
    per_sequence = T.replaced_losses(tiny, ev, per_sequence=True)["ce_per_sequence"]
    assert per_sequence.shape == (8,) and per_sequence.mean() == pytest.approx(clean["ce"], abs=1e-5)
    zero = T.replaced_losses(tiny, ev, {1: T.zero_fn})
    zeroed = T.replace_mlps({1: T.zero_fn}, T.model_sinks(tiny, tokens))
    zero_logits = hooks.run(tiny, tokens, zeroed)
    full_zero = float(hooks.run(tiny, tokens, zeroed, return_type="loss"))
    clean_lp, zero_lp = (lg[:, :-1].log_softmax(-1) for lg in (tiny(tokens), zero_logits))
    full_kl = float((clean_lp.exp() * (clean_lp - zero_lp)).sum(-1).mean())
    assert zero["ce"] == pytest.approx(full_zero, abs=1e-5) and zero["kl"] == pytest.approx(full_kl, rel=1e-4)
    assert zero["kl"] > 0


def test_metrics_of_the_exact_transcoder():
    model = relu_model()
    ev = T.eval_set(model, [1], [windows(model)])
    m = T.dictionary_metrics(
        model, ev, 1, exact_transcoder(model.blocks[1].mlp), "transcoder", T.ce_baselines(model, ev, 1)
    )
    assert m["fvu"] < 1e-8 and m["frac_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert m["delta_ce"] == pytest.approx(0.0, abs=1e-5) and m["kl"] == pytest.approx(0.0, abs=1e-3)
    mlp = model.blocks[1].mlp
    x = ev.x[1][ev.keep]
    assert m["l0"] == pytest.approx(float(((x @ mlp.W_in + mlp.b_in).relu() > 0).sum(-1).float().mean()))
    with pytest.raises(ValueError, match="kind"):
        T.dictionary_fn(None, "mlp")


def test_layer_quality_reports_every_layer_and_the_totals(tiny):
    tokens = windows(tiny)
    transcoders = {layer: T.SparseTranscoder(32, 24, 32, seed=layer) for layer in (0, 1)}
    ev = T.eval_set(tiny, [0, 1], [tokens])
    table, totals = T.layer_quality(tiny, transcoders, ev)
    assert list(table.layer) == [0, 1]
    assert {"l0", "fvu", "delta_ce", "kl", "frac_recovered", "zero_delta_ce", "dead_frac"} <= set(table.columns)
    assert totals["clean"] == pytest.approx(T.replaced_losses(tiny, ev)["ce"])
    assert set(totals) >= {"all_spliced", "all_spliced_kl", "all_zero_ablated", "all_spliced_recovered"}


def test_quality_intervals_bracket_layer_qualitys_summaries(tiny):
    tokens = windows(tiny)
    transcoders = {layer: T.SparseTranscoder(32, 24, 32, seed=layer) for layer in (0, 1)}
    ev = T.eval_set(tiny, [0, 1], [tokens])
    table, totals = T.layer_quality(tiny, transcoders, ev, per_sequence=True)
    ci = T.quality_intervals(totals["per_sequence"])
    recovered, delta = ci["median_recovered"], ci["all_spliced_delta_ce"]
    assert recovered.n == delta.n == len(tokens)  # the units are the evaluation sequences
    assert recovered.estimate == pytest.approx(table.frac_recovered.median(), rel=1e-4)
    assert delta.estimate == pytest.approx(totals["all_spliced"] - totals["clean"], rel=1e-4, abs=1e-6)
    assert recovered.low <= recovered.estimate <= recovered.high and delta.low <= delta.estimate <= delta.high
    assert delta.high > delta.low  # the sequences differ, so the draws do
    clean = T.replaced_losses(tiny, ev, per_sequence=True)["ce_per_sequence"]
    assert totals["per_sequence"]["clean"] == pytest.approx(clean, rel=1e-5)  # the eval set's own pass
    assert totals["per_sequence"]["alone"].shape == totals["per_sequence"]["zero"].shape == (2, len(tokens))


def test_firing_rates_count_every_non_sink_token_once_per_feature(tiny):
    tokens = windows(tiny)
    transcoders = {layer: T.random_transcoder(32, 24, seed=layer) for layer in (0, 1)}
    rates, n = T.firing_rates(tiny, transcoders, [tokens[:3], tokens[3:]])  # two batches, one count
    ev = T.eval_set(tiny, [0, 1], [tokens])
    assert n == int(ev.keep.sum())
    for layer, tc in transcoders.items():
        by_hand = (tc.encode(ev.x[layer][ev.keep]) > 0).double().mean(0)
        torch.testing.assert_close(rates[layer], by_hand)
    assert 0 < float(rates[0].mean()) < 1  # some features fire, not all of them everywhere
    with pytest.raises(ValueError, match="no non-sink tokens"):
        T.firing_rates(tiny, transcoders, [])


def test_fraction_recovered_and_matched_l0_gap():
    assert T.fraction_recovered(3.5, clean_ce=3.0, zero_ce=5.0) == pytest.approx(0.75)
    table = pd.DataFrame(
        {
            "kind": ["sae", "sae", "transcoder", "transcoder"],
            "l0": [10.0, 40.0, 20.0, 80.0],
            "ce_loss": [4.0, 3.0, 3.4, 3.1],
        }
    )
    # the SAE curve at L0 20 (log-interpolated between 10 and 40) is 3.5; L0 80 lies outside it
    assert T.matched_l0_gap(table) == pytest.approx(-0.1)
    assert len(T.pareto_points(table)) == 4
    assert T.overlap_counts(table) == {
        "transcoders": 2, "saes": 2, "transcoders_inside": 1, "saes_inside": 1
    }


def test_matched_l0_interval_resamples_sequences_at_fixed_l0():
    table = pd.DataFrame(
        {"kind": ["sae", "sae", "transcoder"], "l0": [10.0, 40.0, 20.0], "ce_loss": [4.0, 3.0, 3.4]}
    )
    flat = [np.full(6, ce) for ce in table.ce_loss]  # no spread across sequences: a point
    interval = T.matched_l0_interval(table, flat)
    assert (interval.estimate, interval.low, interval.high, interval.n) == pytest.approx(
        (-0.1, -0.1, -0.1, 6)
    )
    rng = np.random.default_rng(0)
    noisy = [ce + rng.normal(0, 0.2, 40) for ce in table.ce_loss]
    interval = T.matched_l0_interval(table, noisy)
    assert interval.low < interval.estimate < interval.high and interval.n == 40
    apart = table.assign(l0=[10.0, 40.0, 80.0])  # no transcoder inside the SAE range
    assert T.matched_l0_interval(apart, flat) is None


class Spelled:
    """Stands in for a model with a tokenizer: token i is spelled <i>."""

    def to_string(self, tokens):
        return "".join(f"<{int(t)}>" for t in tokens.flatten())


def test_contexts_cards_and_ratings():
    tokens = torch.arange(10).view(2, 5)
    acts = torch.zeros(10)
    acts[7] = 2.0
    acts[1] = 1.0
    table = T.top_contexts(Spelled(), tokens, acts, k=3, left=2, right=1)
    assert list(table.activation) == [2.0, 1.0]  # only tokens where it fires
    assert list(table.context) == ["<5><6>[[<7>]]<8>", "<0>[[<1>]]<2>"]  # windows do not cross rows
    assert T.token_consistency(pd.DataFrame({"token": [" a", "a", "b", " A"]})) == 0.75
    cards, key = T.blind_cards({"tc": {1: table, 2: table}, "sae": {5: table}}, seed=0)
    assert set(cards.columns) == {"card", "contexts"} and len(key) == 3
    with pytest.raises(ValueError, match="no rating"):
        T.unblind({0: 1.0}, key)
    summary = T.unblind({c: float(c) for c in cards.card}, key).set_index("dictionary")
    assert summary.loc["tc", "count"] == 2


def test_sae_lens_runner_trains_from_the_shared_cache_and_writes_nothing_to_stderr(
    tmp_path, tiny, capfd
):
    tokens = windows(tiny, n=16, ctx=8, seed=5)
    folder = T.cache_activations(tiny, [1], [tokens], tmp_path / "acts")
    capfd.readouterr()
    sae = T.train_sae_with_sae_lens(
        tiny,
        1,
        tokens,
        d_sae=16,
        l1=1.0,
        training_tokens=256,
        out_dir=tmp_path / "sae",
        cached_activations=folder,
        batch_tokens=32,
    )
    assert sae.cfg.metadata.hook_name == MLP1.out_hook
    assert sae.W_dec.shape == (16, 32) and torch.isfinite(sae.W_dec).all()
    assert capfd.readouterr().err == ""  # no logger lines, warnings or progress bars


def test_quiet_sae_lens_restores_the_logger_and_the_warning_filters():
    logger = logging.getLogger("sae_lens")
    level, filters = logger.level, list(warnings.filters)
    with T.quiet_sae_lens():
        assert logger.level == logging.ERROR
        warnings.warn("dropped inside the block", UserWarning, stacklevel=1)
    assert logger.level == level and warnings.filters == filters


def test_the_resampling_pool_keeps_only_the_most_recent_tokens():
    trainer = T.TranscoderTrainer(
        T.TranscoderTraining(d_sae=8, l1=0.0, resample_pool_tokens=10), layer=0, d_in=4, d_out=4
    )
    for i in range(6):
        trainer.remember(torch.full((4, 4), float(i)), torch.zeros(4, 4))
    kept = torch.cat([x for x, _ in trainer.recent])
    assert len(kept) == 12 and kept[0, 0] == 3 and kept[-1, 0] == 5  # >= 10 tokens, oldest batches dropped


def test_all_layers_train_in_one_pass_and_are_reused(tmp_path):
    model = tiny_model(n_layers=2, seed=4)
    windows_ = torch.randint(0, model.cfg.d_vocab, (8, 16), generator=torch.Generator().manual_seed(0))
    settings = T.LayerSettings(d_sae=24, l1=1e-3, seed=0, data=T.fingerprint([windows_]))
    first = T.train_all_layers(model, [0, 1], [windows_[:4], windows_[4:]], tmp_path, settings, batch_tokens=32).transcoders
    assert set(first) == {0, 1} and first[1].cfg.metadata.hook_name == hooks.sublayer_input_hook(MLP1)
    assert not (tmp_path / "activations").exists()  # activations stay in RAM

    def untouched():
        raise AssertionError("cached transcoders should be re-used, not retrained")
        yield

    again = T.train_all_layers(model, [0, 1], untouched(), tmp_path, settings, batch_tokens=32)
    torch.testing.assert_close(again.transcoders[0].W_enc, first[0].W_enc)
    assert again.l1 == 1e-3 and again.sweep is None


def test_a_sweep_keeps_the_chosen_transcoders_as_those_the_main_run_would_train(tmp_path):
    model = tiny_model(n_layers=2, seed=4)
    windows_ = torch.randint(0, model.cfg.d_vocab, (8, 16), generator=torch.Generator().manual_seed(0))
    ev = T.eval_set(model, [0, 1], [windows_[:2]])
    settings = T.LayerSettings(d_sae=24, seed=0, resample_every=2, decay_fraction=0.3)
    sweep = T.L1Sweep(grid=[1e-3, 0.3], layers=[1], max_l0=1e6, ev=ev)
    swept = T.train_all_layers(model, [0, 1], [windows_[:4], windows_[4:]], tmp_path / "a", settings, 32, 2, sweep)
    assert set(swept.sweep.l1) == {1e-3, 0.3} and swept.l1 == T.choose_l1(swept.sweep, 1e6)
    plain = T.train_all_layers(model, [0, 1], [windows_[:4], windows_[4:]], tmp_path / "b",
                               dataclasses.replace(settings, l1=swept.l1), 32, 2)
    for layer in (0, 1):  # layer 1 came from the sweep, layer 0 from the main run
        torch.testing.assert_close(swept.transcoders[layer].W_dec, plain.transcoders[layer].W_dec)
    again = T.train_all_layers(model, [0, 1], [], tmp_path / "a", settings, 32, 2, sweep)
    pd.testing.assert_frame_equal(again.sweep, swept.sweep, check_dtype=False)
    with pytest.raises(ValueError, match="no 'l1'"):
        T.train_all_layers(model, [0, 1], [], tmp_path / "c", dataclasses.replace(settings, l1=0.1), 32, 2, sweep)
    with pytest.raises(ValueError, match="no 'l1'"):
        T.train_all_layers(model, [0, 1], [], tmp_path / "c", settings, 32, 2)  # no l1 and no sweep


def test_fingerprint_tells_data_apart():
    a = [torch.arange(6).view(2, 3)]
    assert T.fingerprint(a) == T.fingerprint([torch.arange(6).view(2, 3)])
    assert T.fingerprint(a) != T.fingerprint([torch.arange(1, 7).view(2, 3)])


def test_choose_l1_takes_the_best_recovery_within_the_l0_budget():
    sweep = pd.DataFrame({"layer": [0, 1] * 3, "l1": [0.01, 0.01, 0.03, 0.03, 0.1, 0.1],
                          "l0": [300, 250, 80, 90, 10, 12], "frac_recovered": [0.95, 0.9, 0.85, 0.8, 0.5, 0.4]})
    assert T.choose_l1(sweep, max_l0=100) == 0.03
    assert T.choose_l1(sweep, max_l0=5) == 0.1  # none qualifies: the sparsest


def test_rating_difference_is_a_permutation_test():
    key = pd.DataFrame({"card": range(20), "dictionary": ["a"] * 10 + ["b"] * 10, "feature": range(20)})
    ratings = {c: (1.0 if c < 10 else 0.0) for c in range(20)}
    out = T.rating_difference(ratings, key, "a", "b", n_perm=500)
    assert out["difference"] == 1.0 and out["p_value"] < 0.01 and out["n"] == 20
    same = T.rating_difference({c: float(c % 2) for c in range(20)}, key, "a", "b", n_perm=500)
    assert same["p_value"] > 0.5


def test_a_misspelt_setting_is_rejected_with_the_closest_fields(tmp_path):
    with pytest.raises(TypeError, match=r"TranscoderTraining has no field 'warmup' \(did you mean 'warmup_steps'\?\)"):
        T.TranscoderTraining(d_sae=4, l1=0.1, warmup=10)
    model = tiny_model(n_layers=2, seed=4)
    # a mapping is read as LayerSettings, so a typo fails before any training, naming the key
    with pytest.raises(TypeError, match=r"LayerSettings has no field 'lrr' \(did you mean 'lr'"):
        T.train_all_layers(model, [0], [], tmp_path, {"d_sae": 8, "l1": 0.1, "lrr": 1e-3}, 32)
    with pytest.raises(TypeError, match=r"'tokens'; its fields: d_sae, l1, lr"):  # no close match: the list
        T.LayerSettings(d_sae=8, tokens=128)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        T.LayerSettings(d_sae=8, checkpoint_dir="x")
    with pytest.raises(ValueError, match="decay_fraction"):  # TranscoderTraining's checks hold too
        T.LayerSettings(d_sae=8, decay_fraction=2.0)
    assert T.LayerSettings(d_sae=8, lr=0.01, model="m").training(l1=0.5) == T.TranscoderTraining(d_sae=8, l1=0.5, lr=0.01)


def test_sweep_metrics_on_two_texts_and_the_recovered_interval():
    model = relu_model()
    ev = T.eval_set(model, [1], [windows(model, seed=1)])
    own = T.eval_set(model, [1], [windows(model, n=4, seed=2)])
    exact = exact_transcoder(model.blocks[1].mlp)
    dictionaries = {"transcoder": {0.0: exact, 1.0: T.SparseTranscoder(32, 24, 32, seed=3)}}
    table, sequences = T.sweep_metrics(model, 1, dictionaries, ev, own)
    assert list(table.l1) == [0.0, 1.0] and len(sequences) == 2 and sequences[0].shape == (8,)
    assert {f"own_{m}" for m in T.COMPARED} <= set(table.columns)
    assert table.own_frac_recovered[0] == pytest.approx(1.0, abs=1e-4)
    assert sequences[1].mean() == pytest.approx(table.ce_loss[1], abs=1e-5)
    interval = T.recovered_interval(ev, 1, sequences[0])
    assert interval.estimate == pytest.approx(1.0, abs=1e-4) and interval.n == 8


def on_par_table(tc_ce: float, n_tc: int = 3) -> tuple[pd.DataFrame, list[np.ndarray]]:
    l0 = [10.0, 20.0, 40.0, 80.0][: max(n_tc, 1)]
    table = pd.DataFrame(
        {
            "kind": ["sae"] * 3 + ["transcoder"] * len(l0),
            "l0": [5.0, 30.0, 100.0, *l0],
            "ce_loss": [3.0, 3.0, 3.0, *[tc_ce] * len(l0)],
        }
    )
    rng = np.random.default_rng(0)
    return table, [ce + rng.normal(0, 0.01, 30) for ce in table.ce_loss]


@pytest.mark.parametrize(
    ("tc_ce", "n_tc", "word"),
    [(2.9, 3, "holds"), (3.5, 3, "opposite"), (3.1, 3, "within noise"), (2.9, 2, "too few")],
)
def test_on_par_is_a_non_inferiority_test_against_the_margin(tc_ce, n_tc, word):
    table, sequences = on_par_table(tc_ce, n_tc)
    result = T.on_par_verdict(table, sequences, clean_ce=2.0, zero_ce=3.0)  # margin 0.1 nats
    assert result.verdict.word == word and result.margin == pytest.approx(0.1)
    assert (result.interval is None) == (word == "too few")


def test_a_damaged_transcoder_cache_is_retrained_with_a_warning_naming_the_file(tmp_path):
    model = tiny_model(n_layers=2, seed=4)
    windows_ = torch.randint(0, model.cfg.d_vocab, (8, 16), generator=torch.Generator().manual_seed(0))
    settings = T.LayerSettings(d_sae=24, l1=1e-3, seed=0, data=T.fingerprint([windows_]))
    first = T.train_all_layers(model, [0, 1], [windows_], tmp_path / "tc", settings, batch_tokens=32)
    w_enc = first.transcoders[1].W_enc.detach().clone()  # loaded tensors map the file: copy before damaging it
    del first
    (weights,) = (tmp_path / "tc" / "L1").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a killed copy
    with pytest.warns(UserWarning, match=rf"damaged \({weights}.*checksum"):
        again = T.train_all_layers(model, [0, 1], [windows_], tmp_path / "tc", settings, batch_tokens=32)
    torch.testing.assert_close(again.transcoders[1].W_enc, w_enc)
    (tmp_path / "tc" / T.REQUEST_FILE).write_text("{")  # an unreadable request
    with pytest.warns(UserWarning, match="damaged"):
        T.train_all_layers(model, [0, 1], [windows_], tmp_path / "tc", settings, batch_tokens=32)
    other = dataclasses.replace(settings, l1=2e-3)  # other settings: replaced without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert T.train_all_layers(model, [0, 1], [windows_], tmp_path / "tc", other, batch_tokens=32).l1 == 2e-3


def _sweep(rows):
    return pd.DataFrame(rows, columns=["kind", "l1", "l0", "ce_loss"])


def test_closest_l0_pair_compares_l0s_by_ratio():
    sweep = _sweep([("transcoder", 1.0, 10, 3.5), ("transcoder", 2.0, 100, 3.4),
                    ("sae", 1.0, 25, 3.6), ("sae", 2.0, 95, 3.45)])
    tc, sae = T.closest_l0_pair(sweep)
    assert (tc.l0, sae.l0) == (100, 95)


def test_closest_l0_pair_needs_both_kinds():
    with pytest.raises(ValueError, match="at least one transcoder and one SAE"):
        T.closest_l0_pair(_sweep([("transcoder", 1.0, 10, 3.5)]))


def test_feature_density_counts_only_kept_tokens():
    acts = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 3.0], [5.0, 5.0]])
    keep = torch.tensor([True, True, True, False])
    np.testing.assert_allclose(T.feature_density(acts, keep), [2 / 3, 1 / 3])


def test_density_title_gives_each_kind_median_live_density():
    density = {"transcoder": np.array([0.0, 0.01, 0.03]), "sae": np.array([0.02, 0.04, 0.06])}
    fig = T.plot_density(density, {"transcoder": 1.0, "sae": 2.0}, 1234)
    title = fig.axes[0].get_title()
    assert "1,234 held-out tokens" in title and "2.00% (transcoder)" in title and "4.00% (sae)" in title


def test_pareto_figure_draws_one_curve_per_kind_sorted_by_l0():
    sweep = _sweep([("transcoder", 1.0, 100, 3.4), ("transcoder", 2.0, 10, 3.5), ("sae", 1.0, 25, 3.6)])
    ax = T.plot_pareto(sweep, 3.3, 9.0, 4, "title").axes[0]
    curves = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
    assert curves["transcoders"] == [10, 100] and curves["saes"] == [25]
    assert ax.get_xscale() == "log" and "nats" in ax.get_ylabel()


def test_a_skip_transcoder_learns_a_linear_map_the_features_cannot_and_circuits_refuse_it():
    from utils.circuits import attribution

    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 16, generator=g) / 4
    x = torch.randn(4096, 16, generator=g)
    y = x @ a  # linear: the skip path can carry it exactly, ReLU features only piecewise
    losses = {}
    for skip in (False, True):
        cfg = T.TranscoderTraining(d_sae=8, l1=0.0, lr=3e-3, warmup_steps=1, resample_every=0, checkpoint_every=0,
                                   skip=skip)
        trainer = T.TranscoderTrainer(cfg, layer=0, d_in=16, d_out=16)
        for step in range(300):
            rows = slice((step * 256) % 4096, (step * 256) % 4096 + 256)
            record = trainer.step(x[rows], y[rows])
        losses[skip] = record["nmse"]
    assert losses[True] < 0.2 * losses[False]
    skipping = {3: trainer.transcoder, 1: T.SparseTranscoder(16, 8, 16)}
    with pytest.raises(ValueError, match=r"circuit attribution does not handle skip transcoders yet \(layers \[3\]\)"):
        attribution.trace(None, torch.zeros(4, dtype=torch.long), skipping)


def test_batch_topk_keeps_the_k_times_n_largest_activations_and_only_they_get_gradients():
    acts = torch.rand(6, 10, generator=torch.Generator().manual_seed(0)).requires_grad_()
    with torch.enable_grad():
        kept = T.batch_topk(acts, 3)
        kept.sum().backward()
    kept = kept.detach()
    assert (kept > 0).sum() == 18
    assert kept[kept > 0].min() >= acts.detach()[kept == 0].max()  # every kept entry beats every dropped one
    torch.testing.assert_close(kept[kept > 0], acts.detach()[kept > 0])  # kept entries are unchanged
    assert torch.equal(acts.grad, (kept > 0).float())


def test_batch_topk_training_fires_about_k_features_per_token_at_inference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    y = torch.relu(x @ torch.randn(16, 24, generator=g)) @ torch.randn(24, 16, generator=g) / 4
    cfg = T.TranscoderTraining(d_sae=32, l1=0.0, lr=3e-3, warmup_steps=1, resample_every=0, checkpoint_every=0, k=4)
    trainer = T.TranscoderTrainer(cfg, layer=0, d_in=16, d_out=16)
    for step in range(200):
        rows = slice((step * 256) % 4096, (step * 256) % 4096 + 256)
        record = trainer.step(x[rows], y[rows])
    assert record["l0"] == pytest.approx(4.0)  # in training: exactly k per token on average
    tc = trainer.transcoder
    assert tc.threshold > 0
    l0 = (tc.encode(x) > 0).sum(-1).float().mean()  # at inference: the threshold's, close to k
    assert 3.0 < l0 < 5.0, l0
    assert record["nmse"] < 0.5


def test_batch_topk_settings_are_checked():
    with pytest.raises(ValueError, match="set l1=0"):
        T.TranscoderTraining(d_sae=8, l1=0.03, k=4)
    with pytest.raises(ValueError, match=r"1 <= k <= d_sae \(8\)"):
        T.SparseTranscoder(4, 8, 4, k=9)
    with pytest.raises(ValueError, match="custom training_step"):
        T.TranscoderTrainer(T.TranscoderTraining(d_sae=8, l1=0.0, k=4), 0, 4, 4, training_step=lambda *a: 0.0)
    from utils.transcoders.shipped import StreamSettings

    with pytest.raises(ValueError, match="k \\(features per token\\) goes with activation 'batchtopk'"):
        StreamSettings(layers=(0,), n_tokens=4096, k=4)
    with pytest.raises(ValueError, match="goes with activation 'batchtopk'"):
        StreamSettings(layers=(0,), n_tokens=4096, activation="batchtopk", l1=0.0)
    assert StreamSettings(layers=(0,), n_tokens=4096, activation="batchtopk", k=4, l1=0.0).training().k == 4


def test_auxk_loss_fits_the_error_with_each_tokens_largest_dead_activations():
    pre = torch.tensor([[3.0, -1.0, 1.0], [0.5, 2.0, 4.0]])
    w_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    error = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    # k_aux 2: token 0 keeps 3 and 1 -> guess (4, 1); token 1 keeps 2 and 4 -> guess (4, 6)
    expected = ((2.0**2 + 0.0**2) + (4.0**2 + 6.0**2)) / 2 / 2
    assert float(T.auxk_loss(pre, w_dec, error, 2)) == pytest.approx(expected)
    # k_aux above the dead count keeps all of them (ReLU'd): token 1's guess becomes (4.5, 6)
    assert float(T.auxk_loss(pre, w_dec, error, 5)) == pytest.approx((2.0**2 + 4.5**2 + 6.0**2) / 2 / 2)


def test_auxk_trains_the_features_batch_topk_never_keeps():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g)
    y = torch.relu(x @ torch.randn(16, 48, generator=g)) @ torch.randn(48, 16, generator=g) / 6

    def train(aux_k):
        cfg = T.TranscoderTraining(d_sae=32, l1=0.0, lr=3e-3, warmup_steps=1, resample_every=0,
                                   checkpoint_every=0, k=2, aux_k=aux_k, dead_after=5)
        trainer = T.TranscoderTrainer(cfg, layer=0, d_in=16, d_out=16)
        with torch.no_grad():  # half the features start too weak for the top 2 x n of a batch
            trainer.transcoder.W_enc[:, 16:] *= 1e-3
        start = trainer.transcoder.W_enc[:, 16:].clone()
        for step in range(150):
            rows = slice((step * 128) % 2048, (step * 128) % 2048 + 128)
            trainer.step(x[rows], y[rows])
        moved = (trainer.transcoder.W_enc[:, 16:] - start).norm(dim=0)
        kept = T.batch_topk(torch.relu(trainer.transcoder.preactivations(x[:512])), 2) > 0
        return moved, int(kept[:, 16:].any(0).sum()), trainer

    moved, alive, _ = train(None)
    assert moved.max() == 0 and alive == 0  # without AuxK they get no gradient and stay dead
    moved, alive, trainer = train(8)
    assert (moved > 0).all() and alive >= 4, (moved, alive)  # AuxK pulls them in
    assert trainer.idle.max() < 150


def test_auxk_needs_batch_topk():
    with pytest.raises(ValueError, match=r"AuxK \(aux_k=8\) needs BatchTopK features"):
        T.TranscoderTraining(d_sae=8, l1=0.0, aux_k=8)
    from utils.transcoders.shipped import StreamSettings

    settings = StreamSettings(layers=(0,), n_tokens=4096, activation="batchtopk", k=4, l1=0.0, aux_k=16)
    assert settings.training().aux_k == 16 and "AuxK (k_aux 16, weight 0.03125)" in settings.recipe
