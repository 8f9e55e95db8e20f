import inspect
import json
import math
import re
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from utils import hooks, pruning
from utils.models import tiny_model
from utils.pruning import harness, recorded_runs
from utils.sublayers import Sublayer, set_skipped, skipped_now, sublayer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def calib(tiny):
    return torch.randint(0, tiny.cfg.d_vocab, (3, 10), generator=torch.Generator().manual_seed(2))


@pytest.fixture
def deep():
    """A 4-layer tiny model (8 sublayers) so that pruning loops take several steps."""
    torch.set_grad_enabled(False)
    return tiny_model(n_layers=4, seed=3)


def test_skipping_nothing_is_the_original_model(tiny, tokens):
    before = tiny(tokens)
    set_skipped(tiny, [])
    assert torch.equal(tiny(tokens), before)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_skipping_a_sublayer_equals_zeroing_its_write(tiny, tokens, index):
    zeroed = hooks.run(tiny, tokens, hooks.zero_ablate([sublayer(index)]))
    set_skipped(tiny, [index])
    try:
        skipped = tiny(tokens)
    finally:
        set_skipped(tiny, [])
    torch.testing.assert_close(skipped, zeroed, atol=1e-5, rtol=1e-5)


def test_checkpoints_match_the_models_own_residuals(tiny, calib):
    set_skipped(tiny, [1])
    try:
        cp = pruning.Checkpoints(tiny, calib)
        logits, cache = tiny.run_with_cache(calib)
    finally:
        set_skipped(tiny, [])
    expected = [cache[hooks.resid_pre(0)], cache[hooks.resid_mid(0)], cache[hooks.resid_post(0)],
                cache[hooks.resid_mid(1)], cache[hooks.resid_post(1)]]
    assert len(cp.resid) == 5
    for got, want in zip(cp.resid, expected, strict=False):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pruning.final_logits(tiny, cp.resid[-1]), logits, atol=1e-5, rtol=1e-5)


def test_least_squares_recovers_exact_weights_without_noise():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(500, 16, generator=g), torch.randn(16, 8, generator=g)
    fitted = pruning.fit_down_projection(x, x @ w, torch.zeros(16, 8))
    torch.testing.assert_close(fitted, w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ridge", [0.0, 0.1, 10.0])
def test_least_squares_never_increases_its_error(ridge):
    g = torch.Generator().manual_seed(1)
    x, w0 = torch.randn(40, 12, generator=g), torch.randn(12, 6, generator=g)
    target = x @ torch.randn(12, 6, generator=g) + 0.3 * torch.randn(40, 6, generator=g)
    fitted = pruning.fit_down_projection(x, target, w0, ridge)
    assert (x @ fitted - target).pow(2).sum() <= (x @ w0 - target).pow(2).sum() + 1e-4


def test_tuning_lowers_sprint_sensitivity(deep, calib):
    originals = pruning.original_down_projections(deep)
    state = pruning.SprintScorer(pruning.Checkpoints(deep, calib), ridge=0.0)
    try:
        cand = state.tuned(2)  # layer 1's attention; the next MLP is sublayer 3
        assert cand.next_mlp == 3
        assert cand.tuned_sensitivity <= cand.sensitivity + 1e-6
        assert state.tuned(7).tuned_sensitivity == state.tuned(7).sensitivity  # the last MLP: nothing to tune
    finally:
        pruning.restore_dense(deep, originals)


def test_sensitivity_is_relative_l1_after_the_next_mlp(deep, calib):
    state = pruning.SprintScorer(pruning.Checkpoints(deep, calib), ridge=0.1)
    set_skipped(deep, [4])
    try:
        _, cache = deep.run_with_cache(calib)
    finally:
        set_skipped(deep, [])
    dense = pruning.Checkpoints(deep, calib).resid[6]  # after layer 2's MLP (sublayer 5)
    expected = pruning.relative_l1(dense, cache[hooks.resid_post(2)])
    assert state.untuned(4).sensitivity == pytest.approx(expected, rel=1e-4)


def test_relative_l1_by_hand():
    y = torch.tensor([[[1.0, -1.0]], [[2.0, 2.0]]])
    y_hat = torch.tensor([[[1.0, 0.0]], [[2.0, 2.0]]])
    assert pruning.relative_l1(y, y_hat) == pytest.approx(0.5)


@pytest.mark.parametrize("aware,tune", [(True, True), (False, False)])
def test_checkpointed_and_from_scratch_sprint_agree(deep, calib, aware, tune):
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.08}, 4, "overhead")
    originals = pruning.original_down_projections(deep)
    fast = pruning.run_sprint(deep, calib, latency, [1.3], aware, tune, top_k=2, ridge=0.1)
    pruning.restore_dense(deep, originals)
    slow = pruning.run_sprint(deep, calib, latency, [1.3], aware, tune, top_k=2, ridge=0.1, use_cache=False)
    pruning.restore_dense(deep, originals)
    assert fast.order == slow.order
    assert fast.snapshots[1.3].pruned == slow.snapshots[1.3].pruned
    for layer, weight in fast.snapshots[1.3].tuned.items():
        torch.testing.assert_close(weight, slow.snapshots[1.3].tuned[layer], atol=1e-5, rtol=1e-4)
    assert all(torch.equal(deep.blocks[i].mlp.W_out, w) for i, w in originals.items())


def test_cached_scores_equal_fresh_scores_after_a_commit(deep, calib):
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.08}, 4, "overhead")
    originals = pruning.original_down_projections(deep)
    try:
        state = pruning.SprintScorer(pruning.Checkpoints(deep, calib), ridge=0.1)
        state.scores(latency, top_k=3, tune=True)
        state.commit(state.tuned(4))
        cached = [(s, c.index) for s, c in state.scores(latency, top_k=3, tune=True)]
        fresh_state = pruning.SprintScorer(pruning.Checkpoints(deep, calib), ridge=0.1)
        fresh = [(s, c.index) for s, c in fresh_state.scores(latency, top_k=3, tune=True)]
        assert [i for _, i in cached] == [i for _, i in fresh]
        assert [s for s, _ in cached] == pytest.approx([s for s, _ in fresh], rel=1e-4)
    finally:
        pruning.restore_dense(deep, originals)


def test_latency_model_bookkeeping():
    fake = {(): 10.0, "attn": 9.0, "mlp": 8.0}

    class FakeTimer:
        def __call__(self, model, prompt, new_tokens):
            kinds = {s.kind for s in skipped_now(model)}
            return fake[kinds.pop()] if kinds else fake[()]

    model = tiny_model(n_layers=8)
    latency, raw = pruning.measure_latency_model(model, 4, 2, repeats=3, timer=FakeTimer(), formula="overhead")
    assert raw["n_removed"] == 2 and len(raw["layers"]) == 2 and len(raw["samples_s"]["dense"]) == 3
    assert pruning.latency_ratios(raw) == pytest.approx([0.5, 0.5, 0.5])
    interval, testable = pruning.latency_ratio_test(raw)
    assert interval.estimate == pytest.approx(0.5) and testable
    noisy = {**raw, "samples_s": {"dense": [1.0, 1.0], "attn_removed": [1.1, 0.9], "mlp_removed": [0.9, 0.8]}}
    assert pruning.latency_ratios(noisy) == pytest.approx([0.5])  # the repeat where attention saved nothing is undefined
    assert pruning.latency_ratio_test(noisy)[1] is False  # too few valid repeats
    assert pruning.latency_from_raw(raw, 8).per_sublayer_s == latency.per_sublayer_s
    assert latency.per_sublayer_s == {"attn": pytest.approx(0.5), "mlp": pytest.approx(1.0)}
    assert latency.speedup([]) == 1.0
    assert latency.speedup([0, 1, 3]) == pytest.approx(10 / (10 - 0.5 - 2.0))
    assert latency.speedup([Sublayer(0, "attn")]) == pytest.approx(10 / 9.5)
    with pytest.raises(ValueError, match="non-positive"):
        pruning.LatencyModel(1.0, {"attn": 0.6, "mlp": 0.6}, 4, "overhead").speedup([0, 1])


def test_paper_speedup_ignores_overhead():
    latency = pruning.LatencyModel(10.0, {"attn": 0.5, "mlp": 1.0}, 4)  # sublayers: 6 s of 10 s
    assert latency.body_s == pytest.approx(6.0)
    assert latency.paper_speedup([1, 3]) == pytest.approx(6.0 / 4.0)
    assert latency.speedup([1, 3]) == pytest.approx(10.0 / 8.0)
    assert latency.estimate([1, 3]) == latency.paper_speedup([1, 3])
    with pytest.raises(ValueError, match="formula"):
        pruning.LatencyModel(1.0, {"attn": 0.1, "mlp": 0.1}, 4, "wall")


def test_generation_time_runs_with_skipped_attention(tiny):
    set_skipped(tiny, [0])
    try:
        assert pruning.generation_time(tiny, pruning.timing_prompt(tiny, 5), 3) > 0
    finally:
        set_skipped(tiny, [])


def test_nll_and_js_by_hand():
    tokens = torch.tensor([[0, 1]])
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    assert pruning.mean_nll(logits, tokens) == pytest.approx(-torch.log(torch.tensor(0.75)).item())
    p = torch.log(torch.tensor([[1.0, 1e-30]]))
    q = torch.log(torch.tensor([[1e-30, 1.0]]))
    assert pruning.js_divergence(p, q) == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)
    assert pruning.js_divergence(p, p) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("rows", [1, 3, 32])
def test_chunked_losses_equal_the_whole_tensor_formulas(rows):
    gen = torch.Generator().manual_seed(0)
    p, q = 3 * torch.randn(2, 5, 11, generator=gen), 3 * torch.randn(2, 5, 11, generator=gen)
    logp, logq = p.log_softmax(-1), q.log_softmax(-1)
    logm = torch.log((logp.exp() + logq.exp()) / 2)
    whole = float((0.5 * (logp.exp() * (logp - logm)).sum(-1) + 0.5 * (logq.exp() * (logq - logm)).sum(-1)).mean())
    assert pruning.js_divergence(p, q, rows=rows) == pytest.approx(whole, rel=1e-5)
    tokens = torch.randint(0, 11, (2, 5), generator=gen)
    assert pruning.mean_nll(p, tokens) == pytest.approx(float(-logp[:, :-1].gather(-1, tokens[:, 1:, None]).mean()), rel=1e-6)


def test_block_influence_by_hand(tiny, calib):
    cp = pruning.Checkpoints(tiny, calib)
    cp.resid = [torch.tensor([[[1.0, 0.0]]]), None, torch.tensor([[[0.0, 1.0]]]), None, torch.tensor([[[0.0, 2.0]]])]
    assert pruning.block_influence(cp) == pytest.approx([1.0, 0.0])


def test_shortgpt_prunes_lowest_influence_layer_first(deep, calib):
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.05}, 4, "overhead")
    influence = pruning.block_influence(pruning.Checkpoints(deep, calib))
    result = pruning.shortgpt(deep, calib, latency, [1.05])
    lowest = min(range(4), key=influence.__getitem__)
    assert result.order[:2] == [2 * lowest, 2 * lowest + 1]
    assert result.snapshots[1.05].estimated_speedup >= 1.05


def test_greedy_baselines_pick_the_least_harmful_unit(deep, calib):
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.05}, 4, "overhead")
    originals = pruning.original_down_projections(deep)
    losses = {}
    for i in range(8):
        set_skipped(deep, [i])
        losses[i] = pruning.mean_nll(deep(calib), calib)
    set_skipped(deep, [])
    result = pruning.run_method("blockpruner", deep, calib, latency, [1.05], originals)
    assert result.order[0] == min(losses, key=losses.get)
    sleb = pruning.run_method("sleb", deep, calib, latency, [1.05], originals)
    assert sleb.order[0] // 2 not in (0, 3)  # first and last blocks are kept
    assert skipped_now(deep) == []


def test_apply_and_restore_snapshot(deep, calib):
    originals = pruning.original_down_projections(deep)
    weight = torch.ones_like(originals[2])
    pruning.apply_snapshot(deep, pruning.Snapshot([0, 5], {2: weight}, 1.2, 0.1), originals)
    assert [s.index for s in skipped_now(deep)] == [0, 5]
    assert torch.equal(deep.blocks[2].mlp.W_out, weight)
    pruning.restore_dense(deep, originals)
    assert skipped_now(deep) == [] and torch.equal(deep.blocks[2].mlp.W_out, originals[2])


def test_unknown_method_is_named(deep, calib):
    with pytest.raises(ValueError, match="unknown method 'foo'"):
        pruning.run_method("foo", deep, calib, pruning.LatencyModel(1.0, {"attn": 0.1, "mlp": 0.1}, 4, "overhead"), [1.1], {})


def test_refit_improves_held_out_error_on_a_tiny_model():
    """With many more calibration tokens than hidden units the refit generalises; with fewer it overfits."""
    model = tiny_model(n_layers=3, d_mlp=16, seed=5)
    gen = torch.Generator().manual_seed(0)
    many = torch.randint(0, model.cfg.d_vocab, (64, 32), generator=gen)  # 128 tokens per hidden unit
    held = torch.randint(0, model.cfg.d_vocab, (64, 32), generator=gen)
    rows = pruning.refit_diagnostic(model, many, held, [0.0, 0.01])
    assert {r["index"] for r in rows} == {0, 1, 2, 3, 4}  # candidates followed by an MLP (not the last one)
    for row in rows:
        assert row["tuned_in"] <= row["untuned_in"] + 1e-6
    assert all(r["tuned_held"] < r["untuned_held"] for r in rows)  # held-out, not only in-sample
    few = pruning.refit_diagnostic(model, many[:1, :8], held, [0.0])  # 8 tokens for 16 hidden units
    summary = {(r["tokens"], r["ridge"]): r for r in pruning.diagnostic_summary(rows + few)}
    assert summary[(8, 0.0)]["tuned/untuned in-sample"] < 1e-3  # an exact in-sample fit ...
    assert summary[(8, 0.0)]["tuned/untuned held-out"] > summary[(many.numel(), 0.0)]["tuned/untuned held-out"]
    assert pruning.choose_ridge(pruning.diagnostic_summary(rows), many.numel()) in (0.0, 0.01)
    assert skipped_now(model) == []


def test_cached_tuned_scores_compete(deep, calib):
    state = pruning.SprintScorer(pruning.Checkpoints(deep, calib), ridge=0.1)
    tuned = state.tuned(6)  # tuned score of a candidate outside the top-k
    ranked = dict((c.index, s) for s, c in state.scores(None, top_k=1, tune=True))
    assert ranked[6] == pytest.approx(tuned.tuned_sensitivity)


def test_steps_record_metrics_only_where_a_target_is_reached(deep, calib):
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.05}, 4)
    originals = pruning.original_down_projections(deep)
    calls = []
    result = pruning.run_method("sprint", deep, calib, latency, [1.1, 1.3], originals, 2, 0.1,
                                on_step=lambda m: calls.append(len(skipped_now(m))) or {"probe": 1.0})
    with_metrics = [s for s in result.steps if "probe" in s]
    assert len(with_metrics) == len(calls) <= 2 and calls == [len(s["pruned"]) for s in with_metrics]
    assert [s["time_s"] for s in result.steps] == sorted(s["time_s"] for s in result.steps)
    payload = {"runs": {"0": {"sprint": {"steps": result.steps}}}}
    rows = pruning.snapshot_rows(payload, latency, [1.1, 1.3])
    assert [r["target"] for r in rows] == [1.1, 1.3] and all(r["speedup_paper"] >= r["target"] for r in rows)


def test_paired_advantage_signs():
    rows = [{"seed": s, "method": m, "target": 1.3, "cloze_acc": a, "perplexity": p}
            for s in range(3) for m, a, p in (("sprint", 0.5 + 0.01 * s, 10.0), ("other", 0.4, 20.0))]
    cloze = pruning.paired_advantage(rows, 1.3, "sprint", "other", "cloze_acc")
    ppl = pruning.paired_advantage(rows, 1.3, "sprint", "other", "perplexity")
    assert cloze.estimate == pytest.approx(11.0) and cloze.n == 3
    assert ppl.estimate == pytest.approx(math.log(2.0))


def default_protocol(methods: list[str]) -> pruning.RecordingProtocol:
    """The protocol of notebook 04 at default scale with ``methods``."""
    d = pruning.PRESETS["default"]
    return pruning.RecordingProtocol(
        targets=d["targets"], n_calib_windows=d["n_calib_windows"], calib_ctx=d["calib_ctx"], calib_seeds=d["calib_seeds"],
        n_val_tokens=d["n_val_tokens"], val_ctx=d["val_ctx"], n_task_items=d["n_task_items"], n_cloze_items=d["n_cloze_items"],
        cloze_ctx=d["cloze_ctx"], methods=methods, top_k=5, ridge_grid=d["ridge_grid"],
        diagnostic_windows=d["diagnostic_windows"], diagnostic_candidates=d["diagnostic_candidates"], source=d["source"])


def test_protocol_takes_named_values_and_names_close_matches():
    protocol = default_protocol(["sprint"])
    assert pruning.RecordingProtocol(**asdict(protocol)) == protocol
    with pytest.raises(TypeError, match=r"no field 'n_calib_window' \(did you mean 'n_calib_windows'\?\)"):
        pruning.RecordingProtocol(**{**asdict(protocol), "n_calib_window": 3})
    with pytest.raises(TypeError, match="positional"):
        pruning.RecordingProtocol([1.1], 3)


def test_check_recorded_names_the_mismatch():
    protocol = default_protocol(["sprint"])
    runs = {str(s): {"sprint": {}} for s in protocol.calib_seeds}
    payload = {"protocol": {**asdict(protocol), "calib_ctx": 64}, "calibration_hashes": {"0": "a"}, "runs": runs}
    with pytest.raises(pruning.RecordedRunsError, match="runs.json: .*calib_ctx.*recompute_baselines=True"):
        pruning.check_recorded(payload, protocol, {"0": "a"})
    payload["protocol"] = {**asdict(protocol), "diagnostic_candidates": 0}  # the diagnostic does not matter
    with pytest.raises(pruning.RecordedRunsError, match="hash"):
        pruning.check_recorded(payload, protocol, {"0": "b"})
    pruning.check_recorded(payload, protocol, {"0": "a"})


def test_resumable_continues_only_a_partial_recording_of_the_same_protocol():
    protocol = default_protocol(["sprint", "sleb"])
    partial = {"complete": False, "protocol": asdict(protocol), "runs": {"0": {"sprint": {"order": [3]}}}}
    resumed = pruning.resumable(partial, protocol)
    assert resumed == partial and resumed is not partial  # a copy: the caller's dict is never changed
    every_run = {str(s): {"sprint": {}, "sleb": {}} for s in protocol.calib_seeds}
    with pytest.raises(ValueError, match="complete"):
        pruning.resumable({**partial, "runs": every_run}, protocol)
    with pytest.raises(ValueError, match="another protocol"):
        pruning.resumable({**partial, "protocol": {**asdict(protocol), "calib_ctx": 64}}, protocol)


def test_redo_refit_keeps_every_untuned_run_and_records_the_tuned_ones_again(deep, calib, monkeypatch):
    """After a change to the refit, only the diagnostic, the ridge and the runs that tune are made again."""
    monkeypatch.setattr(recorded_runs, "calibration_split", lambda model, n, ctx, seed, source="shipped": (calib + seed, calib))
    monkeypatch.setattr(recorded_runs, "eval_data", lambda model, protocol, seed=0: SimpleNamespace(tasks={}))
    monkeypatch.setattr(recorded_runs, "quality_metrics", lambda model, data, kept: {"perplexity": 1.0})
    monkeypatch.setattr(recorded_runs, "task_table", lambda model, tasks: [])
    protocol = pruning.RecordingProtocol(
        targets=[1.1], n_calib_windows=3, calib_ctx=10, calib_seeds=[0], n_val_tokens=8, val_ctx=8, n_task_items=1,
        n_cloze_items=1, cloze_ctx=8, methods=["sprint", "sprint_no_tuning", "shortgpt"], top_k=2, ridge_grid=[0.1, 1.0],
        diagnostic_windows=[3])
    latency_raw = {"samples_s": {"dense": [1.0], "attn_removed": [0.9], "mlp_removed": [0.9]}, "n_removed": 1,
                   "layers": [1], "prompt_len": 4, "new_tokens": 2}
    rows = lambda best: [{"index": i, "ridge": r, "tokens": 30, "untuned_in": 1.0, "untuned_held": 1.0,  # noqa: E731
                          "tuned_in": 0.5 + (r != best), "tuned_held": 0.5 + (r != best)} for i in (0, 1) for r in (0.1, 1.0)]
    monkeypatch.setattr(recorded_runs, "refit_diagnostic", lambda *a: rows(1.0))
    first = pruning.record_runs(deep, latency_raw, protocol)
    assert pruning.TUNED_METHODS == ("sprint", "sprint_no_latency")
    monkeypatch.setattr(recorded_runs, "refit_diagnostic", lambda *a: rows(0.1))  # a changed refit: 0.1 now wins
    redone = pruning.redo_refit(deep, first, protocol, session=1)
    assert list(redone["runs"]["0"]) == ["sprint_no_tuning", "shortgpt"] and redone["ridge"] == 0.1
    assert redone["redone"] == [{"session": 1, "diagnostic": True, "methods": ["sprint", "sprint_no_latency"]}]
    assert first["ridge"] == 1.0 and "sprint" in first["runs"]["0"]  # the caller's recording is not changed
    again = pruning.record_runs(deep, latency_raw, protocol, resume=redone, session=1)
    assert again["complete"] and {m: r["session"] for m, r in again["runs"]["0"].items()} == {
        "sprint": 1, "sprint_no_tuning": 0, "shortgpt": 0}
    with pytest.raises(ValueError, match="another protocol"):
        pruning.redo_refit(deep, first, replace(protocol, calib_ctx=64), session=1)


def test_a_recording_made_in_two_sessions_equals_one_made_at_once(deep, calib, monkeypatch):
    """``methods`` records a subset (the payload stays partial); resuming adds the rest, each run keeps its
    session, the orders are those of an uninterrupted recording and the partial file names what is missing."""
    monkeypatch.setattr(recorded_runs, "calibration_split", lambda model, n, ctx, seed, source="shipped": (calib + seed, calib))
    monkeypatch.setattr(recorded_runs, "eval_data", lambda model, protocol, seed=0: SimpleNamespace(tasks={}))
    monkeypatch.setattr(recorded_runs, "quality_metrics", lambda model, data, kept: {"perplexity": 1.0})
    monkeypatch.setattr(recorded_runs, "task_table", lambda model, tasks: [])
    protocol = pruning.RecordingProtocol(
        targets=[1.1], n_calib_windows=3, calib_ctx=10, calib_seeds=[0, 1], n_val_tokens=8, val_ctx=8, n_task_items=1,
        n_cloze_items=1, cloze_ctx=8, methods=["sprint", "shortgpt", "sleb"], top_k=2, ridge_grid=[1.0], diagnostic_windows=[])
    latency_raw = {"samples_s": {"dense": [1.0], "attn_removed": [0.9], "mlp_removed": [0.9]}, "n_removed": 1,
                   "layers": [1], "prompt_len": 4, "new_tokens": 2}
    record = lambda **kw: pruning.record_runs(deep, latency_raw, protocol, ridge=1.0, **kw)  # noqa: E731
    whole = record()
    first = record(methods=["shortgpt"])
    assert not first["complete"] and [list(r) for r in first["runs"].values()] == [["shortgpt"], ["shortgpt"]]
    with pytest.raises(ValueError, match=r"missing, per calibration seed: \{0: \['sprint', 'sleb'\].*--resume"):
        pruning.check_recorded(first, protocol, first["calibration_hashes"])
    with pytest.raises(ValueError, match="not in the protocol"):
        record(resume=first, methods=["finercut"])
    resumed = record(resume=first, session=1)
    assert resumed["complete"] and whole["complete"]
    for seed, runs in resumed["runs"].items():
        assert list(runs) == protocol.methods  # protocol order, whatever order they were recorded in
        assert {m: r["order"] for m, r in runs.items()} == {m: r["order"] for m, r in whole["runs"][seed].items()}
        assert {m: r["session"] for m, r in runs.items()} == {"sprint": 1, "shortgpt": 0, "sleb": 1}


def test_a_pruned_model_two_methods_reach_is_evaluated_once(deep, calib, monkeypatch):
    """With equal attention and MLP latencies, SPRINT's latency term changes nothing: both variants reach
    the same tuned models, which are evaluated once, and both runs get those numbers."""
    monkeypatch.setattr(recorded_runs, "calibration_split", lambda model, n, ctx, seed, source="shipped": (calib, calib))
    monkeypatch.setattr(recorded_runs, "eval_data", lambda model, protocol, seed=0: SimpleNamespace(tasks={}))
    monkeypatch.setattr(recorded_runs, "task_table", lambda model, tasks: [])
    calls = []
    monkeypatch.setattr(recorded_runs, "quality_metrics",
                        lambda model, data, kept: calls.append(1) or {"perplexity": float(len(calls))})
    protocol = pruning.RecordingProtocol(
        targets=[1.1, 1.2], n_calib_windows=3, calib_ctx=10, calib_seeds=[0], n_val_tokens=8, val_ctx=8,
        n_task_items=1, n_cloze_items=1, cloze_ctx=8, methods=["sprint", "sprint_no_latency", "sprint_no_tuning"],
        top_k=2, ridge_grid=[1.0], diagnostic_windows=[])
    latency_raw = {"samples_s": {"dense": [1.0], "attn_removed": [0.9], "mlp_removed": [0.9]}, "n_removed": 1,
                   "layers": [1], "prompt_len": 4, "new_tokens": 2}
    runs = pruning.record_runs(deep, latency_raw, protocol, ridge=1.0)["runs"]["0"]
    measured = {m: [step["perplexity"] for step in r["steps"] if "perplexity" in step] for m, r in runs.items()}
    assert runs["sprint"]["order"] == runs["sprint_no_latency"]["order"]
    assert measured["sprint"] == measured["sprint_no_latency"] and len(measured["sprint"]) == 2  # one per target
    assert len(calls) == 2 + 2 + 1  # dense, sprint's two snapshots, the untuned run's two; none for its twin


def test_snapshot_key_tells_pruned_and_tuned_states_apart(tiny):
    originals = pruning.original_down_projections(tiny)
    dense = pruning.snapshot_key(tiny)
    set_skipped(tiny, [1])
    skipped = pruning.snapshot_key(tiny)
    set_skipped(tiny, [])
    tiny.blocks[0].mlp.W_out.data.mul_(1.5)
    tuned = pruning.snapshot_key(tiny)
    pruning.restore_dense(tiny, originals)
    assert len({dense, skipped, tuned}) == 3 and pruning.snapshot_key(tiny) == dense


def test_pruning_times_of_later_sessions_are_put_on_the_first_machine():
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.05}, 4)
    step = {"pruned": [0, 2], "time_s": 10.0, "estimate": 1.5}
    payload = {"sessions": [{"reference_pass_s": 2.0}, {"reference_pass_s": 4.0}],
               "runs": {"0": {"a": {"steps": [step], "session": 0}, "b": {"steps": [step], "session": 1}}}}
    assert pruning.time_scales(payload) == {0: 1.0, 1: 0.5}
    rows = pruning.snapshot_rows(payload, latency, [1.1])
    assert [(r["method"], r["pruning_time_s"], r["session"]) for r in rows] == [("a", 10.0, 0), ("b", 5.0, 1)]
    assert pruning.time_scales({"sessions": [{"reference_pass_s": 2.0}, {}]}) == {0: 1.0, 1: 1.0}  # unknown: unscaled


# ----------------------------------------------------------------------------- the shipped runs.json, damaged


@pytest.fixture(scope="module")
def shipped() -> dict:
    """The shipped recording, as stored."""
    return json.loads((ROOT / pruning.RECORDED_RUNS).read_text())


def _load(root: Path, payload: dict) -> tuple:
    """``load_or_record`` of the runs under ``root``, with the protocol and hashes they were recorded with."""
    model = SimpleNamespace(cfg=SimpleNamespace(n_layers=30))  # only its layer count is read once the file is checked
    protocol = pruning.RecordingProtocol(**payload["protocol"])
    return pruning.load_or_record(model, protocol, payload["calibration_hashes"], False, 512, 128, 3, root)


def _ship(tmp_path: Path, text: str) -> Path:
    """``tmp_path`` as a repository root whose runs file holds ``text``."""
    path = tmp_path / pruning.RECORDED_RUNS
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return tmp_path


REBUILD = r"python scripts/record_baseline_orders\.py --out data/pruning/runs\.json"


def test_the_shipped_runs_pass_their_checksum_and_schema(shipped):
    assert shipped[pruning.CHECKSUM_KEY] == pruning.content_checksum(shipped)
    assert pruning.schema_problems(shipped) == []
    latency, raw, recorded, note = _load(ROOT, shipped)
    assert recorded == shipped and note.startswith("LOADED")


@pytest.mark.parametrize("cut", [0, 1, 1000, -2])
def test_a_truncated_or_empty_runs_file_names_itself_and_its_rebuild(tmp_path, shipped, cut):
    text = (ROOT / pruning.RECORDED_RUNS).read_text()
    root = _ship(tmp_path, text[:cut])
    with pytest.raises(pruning.RecordedRunsError, match=rf"{re.escape(str(tmp_path))}/data/pruning/runs\.json .*{REBUILD}"):
        _load(root, shipped)


def test_a_runs_file_with_a_seed_removed_is_refused(tmp_path, shipped):
    damaged = json.loads(json.dumps(shipped))
    del damaged["runs"]["2"]
    root = _ship(tmp_path, json.dumps(damaged, indent=1))
    with pytest.raises(pruning.RecordedRunsError, match=rf"runs\.json does not match its checksum.*{REBUILD}"):
        _load(root, shipped)
    # even with its checksum updated, the schema check finds the seed's runs missing and says how to add them
    pruning.write_runs(root / pruning.RECORDED_RUNS, damaged)
    with pytest.raises(pruning.RecordedRunsError, match=rf"runs\.json: .*missing, per calibration seed: .*2: \['sprint'.*{REBUILD} --resume"):
        _load(root, shipped)


def test_a_runs_file_with_an_edited_number_is_refused(tmp_path, shipped):
    edited = json.loads(json.dumps(shipped))
    edited["runs"]["0"]["sprint"]["steps"][-1]["cloze_acc"] += 0.01
    root = _ship(tmp_path, json.dumps(edited, indent=1))
    with pytest.raises(pruning.RecordedRunsError, match=rf"does not match its checksum.*{REBUILD}"):
        _load(root, shipped)


def test_another_model_loads_its_own_runs_file_or_computes_all_but_the_greedy_baselines(tmp_path, shipped, monkeypatch):
    gemma_file = "data/pruning/runs-gemma-3-270m.json"
    assert pruning.recorded_runs_file("gemma-3-270m") == gemma_file
    assert pruning.recorded_runs_file("meta-llama/Llama-3.1-8B") == "data/pruning/runs-meta-llama--Llama-3.1-8B.json"
    monkeypatch.setattr(harness, "measure_latency_model", lambda model, *sizes: ("latency", {}))
    monkeypatch.setattr(harness, "record_runs", lambda model, raw, protocol: protocol.methods)  # what it was asked to run
    protocol = pruning.RecordingProtocol(**shipped["protocol"])
    load = lambda name: pruning.load_or_record(None, protocol, {}, False, 4, 2, 1, tmp_path, name)  # noqa: E731
    _, _, methods, note = load("gemma-3-270m")
    assert methods == ["sprint", "sprint_no_latency", "sprint_no_tuning", "sprint_no_both", "sleb", "shortgpt"]
    assert note == ("computed in this run; finercut and blockpruner not run: there is no recorded file "
                    f"{gemma_file} for gemma-3-270m (`python scripts/record_baseline_orders.py --model gemma-3-270m "
                    f"--out {gemma_file}` records one: hours on two CPU cores)")
    with pytest.raises(FileNotFoundError, match=rf"runs\.json is missing: record it with `{REBUILD} --device cuda`"):
        load("smollm2-135m")  # the embedded model's file ships with the repository: its absence is damage
    pruning.write_runs(tmp_path / gemma_file, shipped)
    model = SimpleNamespace(cfg=SimpleNamespace(n_layers=30))
    *_, recorded, note = pruning.load_or_record(model, protocol, shipped["calibration_hashes"], False, 4, 2, 1,
                                                tmp_path, "gemma-3-270m")
    assert recorded == shipped and note.startswith(f"LOADED, not computed in this run: runs and latency model from {gemma_file}")
    without_greedy = json.loads(json.dumps(shipped))  # recorded with --methods: every method but the greedy ones
    for runs in without_greedy["runs"].values():
        del runs["finercut"], runs["blockpruner"]
    pruning.write_runs(tmp_path / gemma_file, without_greedy)
    note = pruning.load_or_record(model, protocol, shipped["calibration_hashes"], False, 4, 2, 1, tmp_path, "gemma-3-270m")[3]
    assert note.endswith("; finercut and blockpruner not recorded for gemma-3-270m")
    del without_greedy["runs"]["0"]["sleb"]  # only the greedy baselines may be missing, and from every seed or none
    without_greedy["runs"]["1"]["finercut"] = shipped["runs"]["1"]["finercut"]
    pruning.write_runs(tmp_path / gemma_file, without_greedy)
    with pytest.raises(pruning.RecordedRunsError, match=r"partial \(missing, per calibration seed: \{0: \['sleb', 'finercut'\], 1: \[\], 2: \['finercut'\]\}"):
        pruning.load_or_record(model, protocol, shipped["calibration_hashes"], False, 4, 2, 1, tmp_path, "gemma-3-270m")


def test_write_runs_round_trips_and_the_schema_names_what_is_wrong(tmp_path, shipped):
    path = tmp_path / "runs.json"
    pruning.write_runs(path, shipped)
    assert pruning.read_runs(path) == shipped
    assert path.read_text() == (ROOT / pruning.RECORDED_RUNS).read_text()  # the shipped file is what the writer writes
    broken = json.loads(json.dumps(shipped))
    broken["runs"]["0"]["sprint"]["steps"] = []
    broken["protocol"]["n_calib_window"] = broken["protocol"].pop("n_calib_windows")
    assert pruning.schema_problems(broken) == ["protocol: RecordingProtocol has no field 'n_calib_window' (did you mean "
                                               f"'n_calib_windows'?); its fields are {list(asdict(default_protocol([])))}"]
    broken["protocol"] = shipped["protocol"]
    assert pruning.schema_problems(broken) == ["runs['0']['sprint'].steps is not a non-empty list"]
    pruning.write_runs(path, broken)
    with pytest.raises(pruning.RecordedRunsError, match=r"runs\.json is not a valid recording: runs\['0'\]\['sprint'\]\.steps"):
        pruning.read_runs(path)


def test_interpolate_at_is_linear_between_the_nearest_snapshots():
    points = [(1.1, 10.0), (1.2, 20.0), (1.4, 40.0)]
    assert pruning.interpolate_at(points, 1.3) == pytest.approx(30.0)
    assert pruning.interpolate_at(points, 1.2) == 20.0  # a snapshot exactly at the target
    assert pruning.interpolate_at(points, 1.15) == pytest.approx(15.0)
    with pytest.raises(ValueError, match="not bracketed"):
        pruning.interpolate_at(points, 1.5)  # never extrapolates


def test_matched_rows_compare_methods_at_the_same_speedup():
    rows = [{"seed": 0, "method": m, "target": t, "speedup_paper": s, "cloze_acc": a, "perplexity": p}
            for m, t, s, a, p in (("sprint", 1.2, 1.2, 0.6, 10.0), ("sprint", 1.3, 1.4, 0.4, 20.0),
                                  ("sleb", 1.2, 1.25, 0.5, 12.0), ("sleb", 1.3, 1.3, 0.45, 14.0),
                                  ("short", 1.3, 1.31, 0.1, 9.0))]
    matched = {r["method"]: r for r in pruning.matched_rows(rows, 1.3, ["cloze_acc", "perplexity"])}
    assert set(matched) == {"sprint", "sleb"}  # "short" has no snapshot at or below 1.3
    assert matched["sprint"]["cloze_acc"] == pytest.approx(0.5)
    assert matched["sprint"]["perplexity"] == pytest.approx(15.0)
    assert (matched["sprint"]["speedup_below"], matched["sprint"]["speedup_above"]) == (1.2, 1.4)
    assert matched["sleb"]["cloze_acc"] == 0.45 and matched["sleb"]["target"] == 1.3
    adv = pruning.paired_advantage(list(matched.values()), 1.3, "sprint", "sleb", "cloze_acc")
    assert adv.estimate == pytest.approx(5.0)
    with_dense = pruning.matched_rows(rows, 1.1, ["cloze_acc"], dense={"cloze_acc": 0.8, "perplexity": 5.0})
    sprint = next(r for r in with_dense if r["method"] == "sprint")
    assert sprint["cloze_acc"] == pytest.approx(0.7) and sprint["speedup_below"] == 1.0


def test_the_closing_table_says_which_methods_were_not_run():
    rows = [{"seed": seed, "method": "sprint", "target": 1.3, "speedup_paper": 1.3, "speedup_overhead": 1.2,
             "cloze_acc": a, "perplexity": 9.0, "probe_above_chance": 0.1, "pruning_time_s": 60.0, "n_attn": 4, "n_mlp": 2}
            for seed, a in ((0, 0.5), (1, 0.6))]
    table = pruning.closing_table(rows, 1.3, {"finercut": "not run: no recorded runs of m"})
    assert [r["method"] for r in table] == ["sprint", "finercut"]
    assert table[0]["seeds"] == 2 and table[0]["attn/MLP removed"] == "4.0/2.0" and "note" not in table[0]
    assert table[1] == {"method": "finercut", "seeds": 0, "note": "not run: no recorded runs of m"}
    assert pruning.closing_table(rows, 1.3) == table[:1]


@pytest.mark.parametrize("method", ["sprint", "sprint_no_tuning", "sleb"])
def test_rebuilt_snapshot_equals_the_run_that_made_it(deep, calib, method):
    originals = pruning.original_down_projections(deep)
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.07}, deep.cfg.n_layers)
    result = pruning.run_method(method, deep, calib, latency, [1.2], originals, 2, 0.1)
    snapshot = result.snapshots[1.2]
    try:
        pruning.apply_snapshot(deep, snapshot, originals)
        want = deep(calib)
        pruning.rebuild_snapshot(deep, method, result.steps[-1]["pruned"], calib, 0.1, originals)
        torch.testing.assert_close(deep(calib), want, atol=1e-5, rtol=1e-5)
    finally:
        pruning.restore_dense(deep, originals)


def test_text_rows_evaluate_each_target_once_per_state_and_leave_the_model_dense(deep, calib):
    originals = pruning.original_down_projections(deep)
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.07}, deep.cfg.n_layers)
    runs = {m: {"steps": pruning.run_method(m, deep, calib, latency, [1.1, 1.2], originals, 2, 0.1).steps}
            for m in ("sprint", "sleb")}
    runs["copy"] = runs["sleb"]
    calls = []
    rows = pruning.text_rows(deep, runs, calib, 0.1, latency, [1.1, 1.2],
                             lambda m: calls.append(1) or {"perplexity": float(len(skipped_now(m)))})
    assert [(r["method"], r["target"]) for r in rows] == [(m, t) for m in runs for t in (1.1, 1.2)]
    states = {(r["method"] == "sprint", r["speedup_paper"]) for r in rows}
    assert len(calls) == len(states) < len(rows)  # "copy" reuses sleb's evaluations
    assert all(r["speedup_paper"] >= r["target"] for r in rows)
    assert not skipped_now(deep)
    for layer, weight in originals.items():
        assert torch.equal(deep.blocks[layer].mlp.W_out, weight)


def _matched(cloze_by_method):
    return [{"seed": s, "method": m, "target": 1.3, "cloze_acc": a + 0.01 * s, "perplexity": 10.0 / a,
             "speedup_below": 1.2, "speedup_above": 1.31} for s in range(3) for m, a in cloze_by_method.items()]


def test_claim_rows_judge_every_comparison_on_its_numbers():
    from utils import verdicts

    matched = _matched({"sprint": 0.5, "sleb": 0.4, "sprint_no_both": 0.55, "sprint_no_latency": 0.3})
    human = [{"method": m, "target": 1.3, "speedup_paper": 1.3, "perplexity": p}
             for m, p in (("sprint", 80.0), ("sleb", 60.0))]
    rows = pruning.claim_rows(matched, ["sleb"], {"sprint_no_both": "both", "sprint_no_latency": "latency"},
                              "1.1 [0.7, 2.9]", False, [math.log(20.0)] * 3, human, "shipped", "prose")
    words = {r["claim"].split(":")[0]: r["verdict"] for r in rows}
    assert all(r["verdict"] in verdicts.WORDS for r in rows)
    assert words["SPRINT is more accurate than sleb at 1.3× (cloze)"] == verdicts.HOLDS
    assert words["both-awareness helps"] == verdicts.OPPOSITE  # SPRINT loses to its ablation: said so
    assert words["latency-awareness helps"] == verdicts.NOT_TESTABLE
    assert words["SPRINT keeps the lowest perplexity on human text at 1.3×"] == verdicts.TOO_FEW
    assert "20.0×" in rows[-1]["here"] and rows[-1]["verdict"] == verdicts.HOLDS
    assert "1.200× and 1.310×" in rows[0]["here"]  # each method's snapshot speed-ups are reported
    assert "on the model's own text" in rows[0]["here"]  # each comparison names its text
    text = pruning.found_sentences(matched, human, 1.3, "shipped", "prose")
    assert "sprint_no_both keeps the highest" in text and "sleb has the lowest perplexity" in text
    assert pruning.calibration_note("shipped") in text and "On human text" in text
    swapped = pruning.claim_rows(matched, ["sleb"], {}, "1.1 [0.7, 2.9]", False, [math.log(20.0)] * 3, human,
                                 "prose", "shipped")
    assert "on human text" in swapped[0]["here"]
    assert swapped[1]["claim"] == "SPRINT keeps the lowest perplexity on the model's own text at 1.3×"
    no_greedy = pruning.claim_rows(matched, ["sleb"], {}, "1.1 [0.7, 2.9]", False, [], human, "prose", "shipped")
    assert [r["claim"] for r in no_greedy] == [r["claim"] for r in swapped[:-1]]  # the time claim: not run


def test_check_rows_and_text_table():
    diagnostic = [{"ridge": 1.0, "tokens": 8, "tuned_in": 0.5, "untuned_in": 1.0, "tuned_held": h,
                   "untuned_held": 1.0} for h in (0.8, 0.9, 0.7)]
    live = {"shortgpt_order_matches": True, "dense_perplexity_here": 7.0, "dense_perplexity_recorded": 7.0}
    rows = pruning.check_rows(diagnostic, 1.0, 8, live, "prose")
    assert [r["result"] for r in rows] == ["passes"] * 4
    worse = [*diagnostic, {**diagnostic[0], "tuned_in": 1.2}]  # one candidate's in-sample error rises
    assert pruning.check_rows(worse, 1.0, 8, {}, "prose")[0]["result"] != "passes"
    through_norm = pruning.check_rows(worse, 1.0, 8, {}, "prose", linear_refit=False)[0]
    assert through_norm["result"] == "passes" and "median 0.500, max 1.200" in through_norm["here"]
    assert rows[-1]["check"] == "dense perplexity recomputed here (human text)"
    recorded = [{"method": "sprint", "target": 1.3, "perplexity": 11.0, "cloze_acc": 0.4}]
    other = [{"method": "sprint", "target": 1.3, "speedup_paper": 1.33, "perplexity": 80.0, "cloze_acc": 0.2}]
    dense, dense_other = {"perplexity": 7.0, "cloze_acc": 0.5}, {"perplexity": 40.0, "cloze_acc": 0.3}
    table = pruning.text_table(recorded, other, dense, dense_other, "shipped", "prose")
    assert [r["method"] for r in table] == ["dense", "sprint"]
    assert table[1]["perplexity (the model's own text)"] == 11.0 and table[1]["speed-up"] == 1.33
    assert table[1]["perplexity (human text)"] == 80.0 and table[0]["cloze (human text)"] == 0.3
    assert list(table[0])[2:] == ["perplexity (human text)", "perplexity (the model's own text)",
                                  "cloze (human text)", "cloze (the model's own text)"]  # human text first
    swapped = pruning.text_table(recorded, other, dense, dense_other, "prose", "shipped")
    assert list(swapped[0])[2:] == list(table[0])[2:]  # still human text first
    assert swapped[1]["perplexity (human text)"] == 11.0 and swapped[1]["perplexity (the model's own text)"] == 80.0


def test_one_latency_ratio_estimator():
    raw = {"samples_s": {"dense": [10.0, 10.0, 10.0], "attn_removed": [8.0, 8.0, 8.0],
                         "mlp_removed": [9.0, 9.0, 9.0]}}
    interval, testable, text = pruning.latency_ratio(raw)
    assert interval.estimate == pytest.approx(2.0) and testable and "n=3" in text
    table = pruning.latency_table(raw)
    assert [r["configuration"] for r in table] == ["dense", "attn_removed", "mlp_removed"]
    assert table[1]["median time"] == pytest.approx(8000.0) and table[1]["repeats"] == 3


def test_coinciding_names_methods_with_identical_picks():
    rows = [{"seed": 0, "target": t, "method": m, "pruned": p} for t in (1.1, 1.2)
            for m, p in (("a", [1, 2]), ("b", [1, 2]), ("c", [3]))]
    assert pruning.coinciding(rows) == ["a = b"]


def test_the_default_root_finds_the_shipped_recording():
    """load_or_record looks under the repository root by default (not under the package's folder)."""
    root = inspect.signature(pruning.load_or_record).parameters["root"].default
    assert "runs" in pruning.read_runs(root / pruning.RECORDED_RUNS)


def test_another_recording_is_rebuilt_on_its_own_calibration_tokens(deep, calib, monkeypatch):
    from utils.pruning import other_text

    originals = pruning.original_down_projections(deep)
    latency = pruning.LatencyModel(1.0, {"attn": 0.05, "mlp": 0.07}, deep.cfg.n_layers)
    runs = {m: {"steps": pruning.run_method(m, deep, calib, latency, [1.2], originals, 2, 0.1).steps}
            for m in ("sprint", "sleb")}
    recording = {"protocol": asdict(default_protocol(["sprint", "sleb"])), "latency": {}, "ridge": 0.1,
                 "calibration_hashes": {"0": pruning.tokens_hash(calib)}, "runs": {"0": runs}}
    asked = []
    monkeypatch.setattr(other_text, "calibration_split", lambda model, n, ctx, seed, source: asked.append(
        (n, ctx, seed, source)) or (calib, calib))
    monkeypatch.setattr(other_text, "latency_from_raw", lambda raw, n_layers: latency)
    evaluate = lambda m: {"perplexity": float(len(skipped_now(m))), "cloze_acc": 0.5}  # noqa: E731
    rows = pruning.other_recording_rows(deep, recording, 0, [1.2], evaluate, "runs.shipped.json")
    assert rows == pruning.text_rows(deep, runs, calib, 0.1, latency, [1.2], evaluate)
    assert asked[0] == (16, 128, 0, recording["protocol"]["source"])  # the recording's own calibration split
    assert all(r["n_attn"] + r["n_mlp"] == r["perplexity"] for r in rows)  # what was removed, counted
    recording["calibration_hashes"]["0"] = "sha256:another"
    with pytest.raises(pruning.RecordedRunsError, match=r"runs\.shipped\.json: its calibration tokens for seed 0"):
        pruning.other_recording_rows(deep, recording, 0, [1.2], evaluate, "runs.shipped.json")


def test_a_recording_on_another_text_is_named_by_its_source(tmp_path):
    other = "prose" if pruning.RECORDED_SOURCE != "prose" else "shipped"
    assert pruning.recorded_runs_file(source=pruning.RECORDED_SOURCE) == pruning.RECORDED_RUNS
    assert pruning.recorded_runs_file(source=other) == f"data/pruning/runs.{other}.json"
    assert pruning.recorded_runs_file("gemma-3-270m", other) == f"data/pruning/runs-gemma-3-270m.{other}.json"
    assert pruning.rebuild_command("x.json", source=other).endswith(f" --source {other} --out x.json")
    rows, note = pruning.calibration_contrast(None, "smollm2-135m", other, 0, 1.3, lambda m: {}, tmp_path)
    assert rows == [] and note == f"no recording of smollm2-135m calibrated on {other!r} (data/pruning/runs.{other}.json)"


def test_calibration_table_sets_the_two_calibrations_side_by_side():
    def row(method, ppl, attn):
        return {"method": method, "target": 1.3, "speedup_paper": 1.31, "perplexity": ppl, "cloze_acc": 0.2,
                "n_attn": attn, "n_mlp": 1}

    here = [row("sprint", 55.0, 9), row("sleb", 76.0, 7)]
    there = [row("sprint", 85.0, 12), row("sleb", 64.0, 7)]
    table = pruning.calibration_table(here, there, "prose", "shipped")
    assert table[0]["perplexity (calibrated on human text)"] == 55.0
    assert table[0]["perplexity (calibrated on the model's own text)"] == 85.0
    assert table[0]["attn/MLP removed (calibrated on the model's own text)"] == "12/1"
    text = pruning.calibration_sentence(here, there, "prose", "shipped")
    assert text == ("Measured on human text: calibrated on human text, SPRINT ranks 1 of 2 by perplexity (55.0; it "
                    "removed 9 attention and 1 MLP sublayers); calibrated on the model's own text, SPRINT ranks 2 of "
                    "2 by perplexity (85.0; it removed 12 attention and 1 MLP sublayers). 1 of 2 methods reach a lower "
                    "perplexity on human text when calibrated on it than when calibrated on the model's own text.")
    without_cloze = [{k: v for k, v in r.items() if k != "cloze_acc"} for r in there]  # a perplexity-only contrast
    columns = set(pruning.calibration_table(here, without_cloze, "prose", "shipped")[0])
    assert not any(c.startswith("cloze") for c in columns) and "perplexity (calibrated on human text)" in columns


def test_text_evaluator_scores_cloze_only_when_asked(bos_model):
    import itertools
    import re

    from utils import data

    texts = itertools.islice(data.corpus_texts("validation", "shipped"), 8)
    model = bos_model(sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]+", text)}))
    both = pruning.text_evaluator(model, "shipped", "validation", 64, 16, 2, 16)(model)
    alone = pruning.text_evaluator(model, "shipped", "validation", 64, 16, 0, 16)(model)
    assert set(both) == {"perplexity", "cloze_acc"} and set(alone) == {"perplexity"}
    assert alone["perplexity"] == both["perplexity"] > 1
