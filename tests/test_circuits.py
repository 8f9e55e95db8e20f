import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.weight_conversions import convert_gemma_weights

from utils import circuits as C
from utils import gemma, hooks
from utils import transcoders as T
from utils.model_layouts import install_fast_blocks
from utils.models import convert_hf, gemma3_config, tiny_model, word_tokenizer
from utils.sublayers import Sublayer


def mlp_input(layer: int) -> str:
    """The hook a transcoder on MLP ``layer`` reads."""
    return hooks.sublayer_input_hook(Sublayer(layer, "mlp"))


def spliced(replacements) -> hooks.FwdHooks:
    """Hooks replacing MLP ``layer``'s write by ``fn(its input, its real write)`` for each (layer, fn)."""
    return hooks.replace_writes({Sublayer(layer, "mlp"): fn for layer, fn in replacements.items()})


def predicted_by(transcoders) -> dict:
    """Each MLP's replacement by its transcoder's prediction, every feature active."""
    return {layer: (lambda x, real, tc=tc: tc.decode(tc.encode(x))) for layer, tc in transcoders.items()}


def tiny_gemma_model() -> HookedTransformer:
    """A 3-layer random Gemma-3 converted as load_model converts the real one (norms after each
    sublayer too, query/key norms, local and global attention)."""
    hf_model = gemma.tiny_gemma3(seed=2)
    return install_fast_blocks(convert_hf(hf_model, None, gemma3_config(hf_model.config, 32), convert_gemma_weights)[0])


@pytest.fixture(scope="module", params=["llama", "gemma"])
def setup(request):
    """A 3-layer tiny model of each architecture, random transcoders on layers 0 and 2 (layer 1 keeps its
    MLP), one prompt."""
    torch.set_grad_enabled(False)
    model = tiny_model(n_layers=3, seed=2) if request.param == "llama" else tiny_gemma_model().eval()
    transcoders = {layer: T.random_transcoder(model.cfg.d_model, 48, seed=layer) for layer in (0, 2)}
    transcoders[0] = transcoders[0].to_sae_lens(0)  # both flavours: sae-lens's and ours
    tokens = torch.randint(0, model.cfg.d_vocab, (10,), generator=torch.Generator().manual_seed(3))
    return model, transcoders, tokens, C.trace(model, tokens, transcoders)


def test_contributions_add_up_to_a_feature_pre_activation(setup):
    model, transcoders, tokens, tr = setup
    _, cache = model.run_with_cache(tokens[None])
    x = cache[mlp_input(2)][0]
    tc = transcoders[2]
    pre = (x - tc.b_pre) @ tc.W_enc + tc.b_enc
    for pos, feature in ((7, 3), (4, 10), (0, 1)):
        target = C.feature_target(tr, transcoders, 2, pos, feature)
        table = C.contributions(model, tr, target, transcoders)
        assert table.attribution.sum() + target.bias == pytest.approx(
            float(pre[pos, feature]), abs=1e-4
        )
        assert C.target_value(tr, target) == pytest.approx(float(pre[pos, feature]), abs=1e-4)
        assert {"embed", "feature", "tc_error", "tc_bias", "mlp", "head", "attn_bias"} >= set(
            table.kind
        )
        assert "mlp" in set(table.kind)  # layer 1 has no transcoder: its whole write is one node


def test_contributions_add_up_to_a_logit_difference(setup):
    model, transcoders, tokens, tr = setup
    logits = model(tokens[None])[0]
    target = C.logit_target(model, pos=9, up=[1, 2], down=[5])
    total = C.contributions(model, tr, target, transcoders).attribution.sum() + target.bias
    expected = logits[9, [1, 2]].mean() - logits[9, 5]
    assert total == pytest.approx(float(expected), abs=1e-4)


def test_head_attribution_equals_the_heads_output_on_v(setup):
    model, transcoders, tokens, tr = setup
    _, cache = model.run_with_cache(tokens[None])
    target = C.feature_target(tr, transcoders, 2, 8, 5)
    table = C.contributions(model, tr, target, transcoders)
    v = target.vector / tr.scale["mlp2"][8]
    for layer in range(3):
        seen = v  # Gemma: the norm after attention scales the heads' sum (its scale on the prompt held)
        if model.cfg.use_normalization_before_and_after:
            seen = v * model.blocks[layer].ln1_post.w / cache[hooks.norm_scale(layer, after=True)][0, 8, 0]
        for head in range(model.cfg.n_heads):
            rows = table[(table.kind == "head") & (table.layer == layer) & (table.unit == head)]
            actual = cache[hooks.attn_point(layer, "z")][0, 8, head] @ model.blocks[layer].attn.W_O[head] @ seen
            assert rows.attribution.sum() == pytest.approx(float(actual), abs=1e-5)


def test_expanded_targets_chain_the_attribution(setup):
    model, transcoders, tokens, tr = setup
    root = C.logit_target(model, pos=9, up=[3], down=[4])
    table = C.contributions(model, tr, root, transcoders)
    checked = 0
    for row in table[table.kind.isin(C.EXPANDABLE)].to_dict("records"):
        child = C.expand(model, tr, transcoders, row, root)
        if row["kind"] == "feature" and tr.acts[row["layer"]][row["pos"], row["unit"]] <= 0:
            continue
        total = C.contributions(model, tr, child, transcoders).attribution.sum() + child.bias
        assert total == pytest.approx(row["attribution"], abs=1e-4)
        checked += 1
    assert checked > 10
    assert (
        C.expand(
            model,
            tr,
            transcoders,
            {"kind": "embed", "layer": -1, "pos": 0, "unit": 0, "src": -1},
            root,
        )
        is None
    )


def test_path_search_edges_come_from_the_attribution_tables(setup):
    model, transcoders, tokens, tr = setup
    root = C.logit_target(model, pos=9, up=[3], down=[4])
    graph = C.path_search(model, tr, transcoders, root, iterations=3, branches=3, beam=3)
    assert len(graph.edges) >= 6
    for edge in graph.edges:
        table = C.contributions(model, tr, graph.targets[edge["parent"]], transcoders)
        names = [C.node_id(r) for r in table.to_dict("records")]
        match = table.attribution[[n == edge["child"] for n in names]]
        assert len(match) == 1 and float(match.iloc[0]) == pytest.approx(edge["attribution"])
    assert set(graph.table().columns) == {"parent", "child", "attribution"}


def test_the_attribution_terms_can_be_passed_in(setup):
    """Notebook 03 passes the learner's feature and head terms: the reference's give the same circuit
    to the bit, another function's terms are the ones the tables and edges carry."""
    model, transcoders, tokens, tr = setup
    root = C.logit_target(model, pos=9, up=[3], down=[4])
    ours = {"feature_fn": C.feature_attributions, "head_fn": C.head_terms}
    pd.testing.assert_frame_equal(C.contributions(model, tr, root, transcoders, **ours),
                                  C.contributions(model, tr, root, transcoders))
    search = dict(iterations=2, branches=3, beam=3)
    assert (C.path_search(model, tr, transcoders, root, **search, **ours).edges
            == C.path_search(model, tr, transcoders, root, **search).edges)
    doubled = {"feature_fn": lambda *a: 2 * C.feature_attributions(*a),
               "head_fn": lambda *a: 3 * C.head_terms(*a)}
    table, reference = (C.contributions(model, tr, root, transcoders, **fns) for fns in (doubled, {}))
    for kind, factor in (("feature", 2), ("head", 3)):
        rows = table.kind == kind
        assert rows.any()
        np.testing.assert_allclose(table.attribution[rows], factor * reference.attribution[rows], rtol=1e-6)
    graph = C.path_search(model, tr, transcoders, root, **search, **doubled)
    assert graph.edges != C.path_search(model, tr, transcoders, root, **search).edges

def test_input_invariant_weights_match_the_attribution_weights(setup):
    model, transcoders, tokens, tr = setup
    target = C.feature_target(tr, transcoders, 2, 6, 7)
    table = C.contributions(model, tr, target, transcoders)
    weights = C.feature_weights(transcoders[0], transcoders[2])[:, 7] / tr.scale["mlp2"][6]
    for row in table[(table.kind == "feature") & (table.layer == 0)].itertuples():
        assert row.weight == pytest.approx(float(weights[row.unit]), abs=1e-5)
    full = C.ov_weights(model, 1, 0, transcoders[0], transcoders[2])
    assert full.shape == (48, 48)
    torch.testing.assert_close(
        C.ov_weights(model, 1, 0, transcoders[0], transcoders[2], feature=7), full[:, 7]
    )


def test_ov_weights_are_the_input_invariant_part_of_a_path_through_a_head(setup):
    model, transcoders, tokens, tr = setup
    pos, feature = 6, 7
    root = C.feature_target(tr, transcoders, 2, pos, feature)
    table = C.contributions(model, tr, root, transcoders)
    weights = C.ov_weights(model, 1, 0, transcoders[0], transcoders[2], feature=feature)
    after = tr.scale["attn_out1"][pos] if model.cfg.use_normalization_before_and_after else 1.0  # Gemma's ln1_post
    checked = 0
    for row in table[(table.kind == "head") & (table.layer == 1) & (table.unit == 0) & (table.src > 0)].to_dict("records"):
        src = int(row["src"])
        chained = C.contributions(model, tr, C.expand(model, tr, transcoders, row, root), transcoders)
        held = tr.pattern[1, 0, pos, src] / (tr.scale["mlp2"][pos] * after * tr.scale["attn1"][src])  # norms held
        for r in chained[(chained.kind == "feature") & (chained.layer == 0)].itertuples():
            expected = float(tr.acts[0][src, r.unit] * held * weights[r.unit])
            assert r.attribution == pytest.approx(expected, rel=1e-4, abs=1e-7)
            checked += 1
    assert checked > 5


def test_greater_than_prompts_and_probability_difference():
    prompts = C.greater_than_prompts([32, 7])
    assert prompts.prompt[0] == "The war lasted from the year 1732 to the year 17"
    assert prompts.prompt[1] == "The war lasted from the year 1707 to the year 17"
    assert list(prompts.tens) == [3, 0]
    with pytest.raises(ValueError, match="two-digit"):
        C.greater_than_prompts([123])
    logits = torch.full((2, 10), -1e9)
    logits[0, 5] = logits[0, 1] = 0.0  # half on a later digit, half on an earlier one
    logits[1, 3] = 0.0  # all on the start's own tens digit: neither later nor earlier
    diff = C.prob_diff(logits.softmax(-1), torch.tensor([3, 3]))
    torch.testing.assert_close(diff, torch.tensor([0.0, 0.0]))
    one_hot = torch.eye(10)[[9, 0]]
    torch.testing.assert_close(
        C.prob_diff(one_hot, torch.tensor([3, 3])), torch.tensor([1.0, -1.0])
    )
    assert C.later_earlier(3) == ([4, 5, 6, 7, 8, 9], [0, 1, 2])
    with pytest.raises(ValueError, match="1..8"):
        C.later_earlier(0)


def test_keeping_units_against_their_mean_ablation(setup):
    model, transcoders, tokens, tr = setup
    batch = torch.stack([tokens, tokens.roll(1)])
    _, cache = model.run_with_cache(batch)
    f_means = {layer: tc.encode(cache[mlp_input(layer)]).mean(0) for layer, tc in transcoders.items()}
    everything = {layer: torch.arange(48) for layer in transcoders}
    kept = hooks.run(model, batch, spliced(C.features_kept(transcoders, f_means, everything)))
    torch.testing.assert_close(kept, hooks.run(model, batch, spliced(predicted_by(transcoders))))
    store = {}
    mlp2 = Sublayer(2, "mlp").out_hook
    hooks.run(model, batch, spliced(C.features_kept(transcoders, f_means, {})) + hooks.capture([mlp2], store))
    # no feature kept: every feature at its mean over the batch, identical for both rows
    torch.testing.assert_close(store[mlp2][0], store[mlp2][1])
    torch.testing.assert_close(store[mlp2][0], transcoders[2].decode(f_means[2]))
    n_means = {layer: cache[hooks.mlp_post(layer)].mean(0) for layer in range(3)}
    neurons = {layer: torch.arange(model.cfg.d_mlp) for layer in range(3)}
    torch.testing.assert_close(hooks.run(model, batch, C.neurons_kept(n_means, neurons)), model(batch))
    none = hooks.run(model, batch, C.neurons_kept(n_means, {}))
    assert not torch.allclose(none, model(batch))


def test_sink_positions_are_real_mlp_terms_in_the_attribution(setup):
    model, transcoders, tokens, tr = setup
    assert bool(tr.sinks[0]) and (tr.acts[2][0] == 0).all()
    target = C.feature_target(tr, transcoders, 2, 0, 3)
    table = C.contributions(model, tr, target, transcoders)
    assert set(table[table.kind == "mlp"].layer) == {0, 1} and "feature" not in set(table.kind)
    assert table.attribution.sum() + target.bias == pytest.approx(C.target_value(tr, target), abs=1e-4)


def test_top_units_ranks_across_layers():
    scores = {0: torch.tensor([0.1, -5.0, 0.2]), 3: torch.tensor([3.0, 0.0])}
    top = C.top_units(scores, 2)
    assert top[0].tolist() == [1] and top[3].tolist() == [0]


def test_best_layer_window_picks_the_heaviest_consecutive_layers():
    scores = {0: torch.tensor([1.0, -1.0]), 1: torch.tensor([0.1]), 2: torch.tensor([-3.0]), 3: torch.tensor([2.0])}
    assert C.best_layer_window(scores, 2) == [2, 3]
    assert C.best_layer_window(scores, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="between 1 and 4"):
        C.best_layer_window(scores, 5)
    with pytest.raises(ValueError, match="consecutive"):
        C.best_layer_window({0: torch.ones(1), 5: torch.ones(1)}, 2)


def test_circuit_figure_keeps_at_most_25_nodes_and_merges_errors_per_layer(setup):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, transcoders, tokens, tr = setup
    root = C.logit_target(model, pos=9, up=[1, 2], down=[5])
    graph = C.path_search(model, tr, transcoders, root, iterations=3, branches=6, beam=6)
    shown = C.circuit_nodes(graph, max_nodes=10)
    assert len(shown) <= 10 and (shown.kind == "target").sum() == 1
    assert "tc_error" not in set(shown.kind)
    errors = shown[shown.kind == "error"]
    assert errors.layer.is_unique  # one error node per layer
    fig, ax = plt.subplots()
    drawn = C.plot_circuit(graph, ax, [str(int(t)) for t in tokens], "test", max_nodes=10)
    assert len(drawn) == len(shown) and all(len(label) <= 10 for label in drawn.label)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:2] == ["raises the target", "lowers the target"] and "|attribution|" in legend[2]
    plt.close(fig)


def crowded_graph(n_pos: int = 10) -> "C.Graph":
    """A circuit whose nodes pile up at the last position, as real ones do: several features per
    layer there, heads reading it, biases, errors and a root."""
    graph = C.Graph()
    last = n_pos - 1
    rows = [{"kind": "target", "layer": 30, "pos": last, "unit": -1, "src": None, "attribution": 1.0},
            {"kind": "embed", "layer": -1, "pos": 0, "unit": 5, "src": None, "attribution": 0.2}]  # 30 layers tall
    for layer in (26, 27, 28):
        rows += [{"kind": "feature", "layer": layer, "pos": last, "unit": 100 * layer + i, "src": None, "attribution": 0.3}
                 for i in range(3)]
        rows += [{"kind": "head", "layer": layer, "pos": last, "unit": i, "src": last, "attribution": 0.2} for i in range(2)]
        rows += [{"kind": "tc_bias", "layer": layer, "pos": last, "unit": -1, "src": None, "attribution": 0.1},
                 {"kind": "tc_error", "layer": layer, "pos": last, "unit": -1, "src": None, "attribution": 0.1}]
    rows += [{"kind": "head", "layer": 27, "pos": last, "unit": 7, "src": 2, "attribution": 0.2}]
    for row in rows:
        graph.nodes[C.node_id(row) if row["kind"] != "target" else "root"] = row
    graph.edges = [{"parent": "root", "child": name, "attribution": node["attribution"]}
                   for name, node in graph.nodes.items() if name != "root"]
    return graph


def test_circuit_labels_do_not_overlap_at_the_notebooks_size():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Bbox

    graph = crowded_graph()
    shown = C.circuit_nodes(graph)
    spots, centres = C.circuit_layout(shown, 10)
    assert len(centres) == 11 and centres == sorted(centres)
    for a, b in itertools.combinations(spots.values(), 2):  # no two nodes closer than a unit or a layer
        assert abs(a[0] - b[0]) >= 1 - 1e-9 or abs(a[1] - b[1]) >= 1 - 1e-9
    fig, ax = plt.subplots(figsize=(13, 11))  # the notebook's circuit figure
    C.plot_circuit(graph, ax, [f"tok{i}" for i in range(10)], "crowded")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == len(shown)
    assert not [(i, j) for i, j in itertools.combinations(range(len(boxes)), 2) if boxes[i].overlaps(boxes[j])]
    radius = 4 * fig.dpi / 72  # a marker of size 60 pt^2 is about 8 pt across
    markers = [Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
               for x, y in ax.transData.transform([spots[name] for name in shown.name])]
    covered = [(i, j) for i, j in itertools.permutations(range(len(boxes)), 2) if boxes[i].overlaps(markers[j])]
    assert not covered  # no label lies on another node
    plt.close(fig)


def test_error_share_and_topk_overlap():
    table = pd.DataFrame({"kind": ["feature", "feature", "tc_error", "head"], "attribution": [1.0, -1.0, 2.0, 5.0],
                          "layer": [0, 1, 0, 0], "unit": [3, 4, -1, 0]})
    assert C.error_share(table) == pytest.approx(0.5)
    weights = pd.DataFrame({"layer": [0] * 10 + [1] * 10, "unit": list(range(10)) * 2, "weight": [0.0] * 20})
    weights.loc[3, "weight"] = 9.0  # layer 0 feature 3 has the largest weight
    share, chance = C.topk_overlap(table, weights, k=2, k_weights=1)
    assert share == pytest.approx(0.5) and chance == pytest.approx(1 / 20)


def test_permuted_null_sits_near_the_structural_correlation():
    g = np.random.default_rng(0)
    weight = g.normal(size=300)
    act = g.exponential(size=300)
    table = pd.DataFrame({"kind": "feature", "weight": weight, "attribution": act * weight})
    null = C.permuted_correlation_null([table], n_perm=50, seed=0)
    observed = C.invariant_vs_dependent([table])
    assert len(null) == 50 and abs(observed - null.mean()) < 0.1  # random activations: no better than the null


@pytest.fixture(scope="module")
def worded():
    """A 3-layer tiny model with a word-level tokenizer (so features' tokens can be named) and random
    transcoders on every layer."""
    tokenizer = word_tokenizer(["w" + a + b for a in "abcd" for b in "abcdefghij"])  # 40 words, no digits
    model = tiny_model(n_layers=3, d_vocab=len(tokenizer), seed=5)
    model.set_tokenizer(tokenizer)
    return model, {layer: T.random_transcoder(model.cfg.d_model, 24, seed=layer) for layer in range(3)}


def test_a_layer0_hypothesis_reads_layer0_features_directly_and_through_heads(worded):
    model, transcoders = worded
    hyp, other = C.layer0_hypotheses(model, transcoders, 2, [5, 9], k_features=1, k_tokens=3)
    through = torch.stack([C.ov_weights(model, layer, head, transcoders[0], transcoders[2], 5)
                           for layer in (1, 2) for head in range(model.cfg.n_heads)]).amax(0)
    direct = C.feature_weights(transcoders[0], transcoders[2])[:, 5]
    words = lambda tc, f: {t.strip().lower() for t in T.de_embedding(model, tc, f, 3).token}  # noqa: E731
    assert hyp.context == words(transcoders[0], int(through.argmax()))
    assert hyp.current == words(transcoders[0], int(direct.argmax())) | words(transcoders[2], 5)
    assert hyp.describe().startswith("on: ") and " | after: " in hyp.describe()
    assert other == C.layer0_hypotheses(model, transcoders, 2, [9], k_features=1, k_tokens=3)[0]
    with pytest.raises(ValueError, match="layer >= 1"):
        C.layer0_hypotheses(model, transcoders, 0, [5])


def test_hypothesis_hits_count_the_token_or_an_earlier_context_token(worded):
    model, _ = worded
    tokens = model.to_tokens(["waa wab wac wad", "wae waf wag wah"], prepend_bos=False)
    acts = torch.zeros(tokens.numel())
    acts[[3, 6, 5]] = torch.tensor([3.0, 2.0, 1.0])  # top: wad (after waa..wac), wag (after wae, waf), waf
    hyp = C.Hypothesis(current=frozenset({"wad"}), context=frozenset({"wae"}))
    assert C.hypothesis_hits(model, tokens, acts, hyp, k_contexts=3) == pytest.approx(1.0)
    assert C.hypothesis_hits(model, tokens, acts, hyp, k_contexts=3, window=1) == pytest.approx(2 / 3)  # wae is 2 back of wag
    assert C.hypothesis_hits(model, tokens, acts, C.Hypothesis(frozenset(), frozenset()), 3) == 0.0
    assert np.isnan(C.hypothesis_hits(model, tokens, torch.zeros_like(acts), hyp, 3))


def test_the_blind_null_is_always_another_features_hypothesis(worded):
    model, transcoders = worded
    tokens = torch.randint(1, model.cfg.d_vocab, (4, 12), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens)
    acts = {layer: transcoders[layer].encode(cache[mlp_input(layer)]).reshape(-1, 24) for layer in (1, 2)}
    cases = [(1, 3), (2, 7)]  # one feature per layer: the null must come from the other layer
    table = C.blind_scores(model, transcoders, acts, tokens, cases, k_contexts=5)
    other = C.layer0_hypotheses(model, transcoders, 2, [7])[0]
    assert table.null[0] == C.hypothesis_hits(model, tokens, acts[1][:, 3], other, 5)
    assert table.hypothesis[0] == C.layer0_hypotheses(model, transcoders, 1, [3])[0].describe()
    with pytest.raises(ValueError, match="at least 2"):
        C.blind_scores(model, transcoders, acts, tokens, cases[:1], 5)


def test_targets_reached_from_two_parents_add_up(setup):
    model, transcoders, tokens, tr = setup
    a, b = C.feature_target(tr, transcoders, 2, 6, 7, 0.5), C.feature_target(tr, transcoders, 2, 6, 7, 1.5)
    both = a.plus(b)
    assert C.target_value(tr, both) == pytest.approx(C.target_value(tr, a) + C.target_value(tr, b), rel=1e-5)
    with pytest.raises(ValueError, match="cannot add targets"):
        a.plus(C.feature_target(tr, transcoders, 2, 5, 7))


def test_quality_and_window_verdicts_use_the_five_words():
    from utils import verdicts
    from utils.stats import Interval

    assert C.splice_verdict(Interval(0.6, 0.5, 0.8, 6)).word == verdicts.HOLDS
    assert C.splice_verdict(Interval(1.15, 1.05, 1.3, 6)).word == verdicts.OPPOSITE
    assert C.splice_verdict(Interval(1.15, 0.9, 1.3, 6)).word == verdicts.WITHIN_NOISE  # straddles 1 nat
    assert C.splice_verdict(Interval(0.6, 0.5, 0.8, 4)).word == verdicts.TOO_FEW
    assert C.recovered_verdict(Interval(0.85, 0.82, 0.88, 6), 63, 100).word == verdicts.HOLDS
    assert C.recovered_verdict(Interval(0.80, 0.76, 0.83, 6), 63, 100).word == verdicts.WITHIN_NOISE
    denser = C.recovered_verdict(Interval(0.95, 0.93, 0.97, 6), 140, 100)
    assert denser.word == verdicts.OPPOSITE and "median L0 140 is above 100" in denser.reason
    assert C.window_verdict(0.2, [3, 4], 0.05) is None
    raised = C.window_verdict(-0.111, [21, 22, 23], 0.05)
    assert raised.word == verdicts.NOT_TESTABLE and "rise 0.111" in raised.reason and "21-23" in raised.reason
    assert "fall 0.030" in C.window_verdict(0.03, [1, 2], 0.05).reason
    assert C.window_title(0.2, [3, 4], 0.05).endswith("(fall 0.200)")
    assert "rise 0.111" in C.window_title(-0.111, [21, 22], 0.05)
    assert "lowers it by only 0.030" in C.window_title(0.03, [21, 22], 0.05)


def test_features_vs_neurons_reads_the_interval_over_sizes():
    from utils import verdicts

    curve = pd.DataFrame({"k": [1, 3, 10, 30], "features": [0.3, 0.4, 0.5, 0.6], "neurons": [0.1, 0.2, 0.3, 0.4]})
    assert C.features_vs_neurons(curve, 3).word == verdicts.HOLDS
    swapped = curve.rename(columns={"features": "neurons", "neurons": "features"})
    assert C.features_vs_neurons(swapped, 3).word == verdicts.OPPOSITE
    assert C.features_vs_neurons(curve.head(2), 3).word == verdicts.TOO_FEW


def test_quality_table_puts_the_model_written_values_beside():
    prose = pd.DataFrame({"layer": [0, 1], "l0": [10.0, 20.0], "fvu": [0.5, 0.6], "frac_recovered": [0.4, 0.5],
                          "delta_ce": [0.1, 0.2], "kl": [0.1, 0.1], "dead_frac": [0.0, 0.1], "extra": [1, 2]})
    own = prose.assign(fvu=[0.3, 0.4], frac_recovered=[0.7, 0.8])
    table = C.quality_table(prose, own)
    assert list(table.columns) == ["layer", "L0", "FVU", "recovered", "ΔCE", "KL", "dead",
                                   f"FVU {C.OWN_TEXT}", f"recovered {C.OWN_TEXT}"]
    assert table[f"recovered {C.OWN_TEXT}"].tolist() == [0.7, 0.8] and table.recovered.tolist() == [0.4, 0.5]


def test_feature_heatmap_has_two_panels_each_centred_at_zero(setup):
    model, transcoders, _, _ = setup
    features = pd.DataFrame({"layer": [0, 2, 1], "unit": [3, 5, 0]})  # layer 1 has no transcoder
    de_emb, logit = C.feature_digit_scores(model, transcoders, features, [1, 2, 3], ["a", "b", "c"])
    assert list(de_emb.index) == ["L0.F3", "L2.F5"] and list(logit.columns) == ["a", "b", "c"]
    expected = T.rms_embeddings(model)[[1, 2, 3]] @ transcoders[2].W_enc[:, 5]
    np.testing.assert_allclose(de_emb.loc["L2.F5"].to_numpy(), expected.numpy(), rtol=1e-5)
    fig = C.plot_feature_digits(de_emb, logit)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2  # one per panel, each with its own colour bar
    assert len(fig.axes) == 4
    for image, scores in zip(images, (de_emb, logit), strict=True):
        bound = float(np.abs(scores.to_numpy()).max())
        assert image.norm.vcenter == 0 and image.norm.vmin == pytest.approx(-bound)
        assert image.norm.vmax == pytest.approx(bound)


def test_quality_and_top_k_figures_are_titled_from_their_numbers():
    frame = pd.DataFrame({"layer": [0, 1, 2], "l0": [10.0, 20.0, 30.0], "fvu": [0.5, 0.6, 0.7],
                          "frac_recovered": [0.4, 0.5, 0.6]})
    fig = C.plot_layer_quality(frame, frame.assign(frac_recovered=[0.7, 0.8, 0.9]), 100.0)
    assert fig.axes[2].get_title() == f"recovered per layer: median 50% (80% {C.OWN_TEXT})"
    assert C.plot_layer_quality(frame, frame.iloc[:0], 100.0).axes[1].get_title() == "FVU per layer: median 0.60"
    curve = pd.DataFrame({"k": [1, 3, 10], "features": [0.3, 0.4, 0.5], "neurons": [0.1, 0.2, 0.3]})
    verdict = C.features_vs_neurons(curve, 3)
    title = C.plot_top_k(curve, {"original model": 0.5}, verdict).axes[0].get_title()
    assert title.startswith("Top-k circuits, features − neurons 0.200 [0.200, 0.200] over 3 sizes: holds")


def test_l1_sweep_figure_and_sentence_set_the_layers_trained_here_against_the_shipped_ones():
    sweep = pd.DataFrame({"layer": np.array([10, 10, 20, 20]), "l1": [0.03, 0.05, 0.03, 0.05],
                          "l0": [70.0, 40.0, 90.0, 55.0], "fvu": [0.3, 0.33, 0.4, 0.44],
                          "frac_recovered": [0.8, 0.82, 0.78, 0.77], "dead_frac": [0.01, 0.08, 0.0, 0.0]})
    shipped = pd.DataFrame({"layer": [9, 10, 20], "l0": [30.0, 49.5, 70.7], "fvu": [0.2, 0.24, 0.27],
                            "frac_recovered": [0.7, 0.923, 0.951], "dead_frac": [0.0, 0.031, 0.005]})
    fig = C.plot_l1_sweep(sweep, 100.0, 0.05, shipped)
    assert fig.axes[0].get_title() == "L1 sweep on layers [10, 20]: chosen L1 = 0.05 (stars: shipped)"
    stars = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    assert [tuple(c.get_offsets()[0]) for c in stars] == [(49.5, 0.923), (70.7, 0.951)]  # layer 9 is not in the sweep
    assert C.plot_l1_sweep(sweep, 100.0, 0.05).axes[0].get_title() == "L1 sweep on layers [10, 20]: chosen L1 = 0.05"
    line = C.live_vs_shipped(sweep[sweep.l1 == 0.05], shipped, "BatchTopK k 64, d_sae 768")
    assert line == ("Trained here (L1-ReLU, l1 0.05) vs shipped (BatchTopK k 64, d_sae 768), "
                    "on held-out human prose: layer 10: 82% recovered at L0 40 "
                    "(FVU 0.33, 8% dead) here vs 92% at L0 50 (FVU 0.24, 3% dead) shipped; layer 20: 77% recovered "
                    "at L0 55 (FVU 0.44, 0% dead) here vs 95% at L0 71 (FVU 0.27, 0% dead) shipped.")


def test_feature_labels_name_the_top_read_and_written_tokens():
    words = [f"w{i}" for i in range(20)]
    model = tiny_model(n_layers=3, d_vocab=len(words) + 1, seed=2)
    model.set_tokenizer(word_tokenizer(words))
    transcoders = {2: T.random_transcoder(model.cfg.d_model, 16, seed=2)}
    features = pd.DataFrame({"layer": [2, 1], "unit": [5, 0]})  # layer 1 has no transcoder
    labels = C.feature_labels(model, transcoders, features, k=2)
    reads = T.de_embedding(model, transcoders[2], 5, 2).token
    assert labels.iloc[1] == "" and labels.iloc[0].startswith("reads ")
    assert labels.iloc[0].split(" → ")[0] == "reads " + "|".join(repr(t.strip() or t)[1:-1] for t in reads)
    assert labels.iloc[0].split(" → ")[1].startswith("writes ")
    shown = pd.DataFrame({"kind": ["feature", "head", "feature"], "layer": [2.0, 1.0, 2.0], "unit": [5, 0, 5]})
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    key = C.circuit_key(ax, model, transcoders, shown)
    label = C.feature_labels(model, transcoders, features.iloc[:1]).iloc[0]  # k=3, the default
    assert key.to_dict("records") == [{"layer": 2, "unit": 5, "label": label}]
    assert ax.texts[-1].get_text() == f"Features shown, L2 F5: {label}"
    plt.close(fig)


def test_feature_labels_escape_what_the_figure_font_cannot_draw():
    from utils.plotting import drawable

    assert drawable("年 é ไทย") == "\\u5e74 é \\u0e44\\u0e17\\u0e22"  # DejaVu Sans has é, not CJK or Thai
    words = [f"{w}{i}" for w in ("年", "ไทย", "é") for i in range(7)]  # like Gemma's vocabulary
    model = tiny_model(n_layers=2, d_vocab=len(words) + 1, seed=3)
    model.set_tokenizer(word_tokenizer(words))
    transcoders = {1: T.random_transcoder(model.cfg.d_model, 8, seed=3)}
    shown = pd.DataFrame({"kind": ["feature"], "layer": [1.0], "unit": [2]})
    import warnings

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font" is a UserWarning
        C.circuit_key(ax, model, transcoders, shown)
        fig.canvas.draw()
    assert "\\u" in ax.texts[-1].get_text() and "年" not in ax.texts[-1].get_text()
    plt.close(fig)


def test_window_figure_marks_the_chosen_window():
    import matplotlib.pyplot as plt

    joint = pd.Series({0: -0.2, 1: 0.01, 2: 0.04})
    fig, ax = plt.subplots()
    C.plot_window_effects(ax, joint, [2, 3], C.window_title(0.04, [2, 3]))
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([-0.2, 0.01, 0.04])
    assert [bar.get_facecolor() == ax.patches[2].get_facecolor() for bar in ax.patches] == [False, False, True]
    assert "lowers it by only 0.040" in ax.get_title()
    plt.close(fig)


def test_attributions_stay_exact_through_jumprelu_transcoders(setup):
    """A BatchTopK transcoder fires at inference where its pre-activation clears a threshold (sae-lens's
    JumpReLUTranscoder): an active feature's value is still its linear pre-activation, so contributions
    to the logit and to each active feature still add up."""
    model, transcoders, tokens, tr = setup
    plain = T.random_transcoder(model.cfg.d_model, 48, seed=2)
    jump = T.SparseTranscoder(model.cfg.d_model, 48, model.cfg.d_model, k=8)
    jump.load_state_dict(plain.state_dict(), strict=False)
    jump.threshold.fill_(float(tr.acts[2][tr.acts[2] > 0].median()))  # silences about half the active ones
    jumpy = {**transcoders, 2: jump.to_sae_lens(2)}
    tr_jump = C.trace(model, tokens, jumpy)
    assert 0 < (tr_jump.acts[2] > 0).sum() < (tr.acts[2] > 0).sum()
    root = C.logit_target(model, pos=9, up=[3], down=[4])
    table = C.contributions(model, tr_jump, root, jumpy)
    expected = model(tokens[None])[0, 9]  # the unspliced model: the error nodes carry the difference
    assert table.attribution.sum() + root.bias == pytest.approx(float(expected[3] - expected[4]), abs=1e-4)
    features = table[(table.kind == "feature") & (table.layer == 2)].to_dict("records")
    assert features
    for row in features:
        child = C.expand(model, tr_jump, jumpy, row, root)
        total = C.contributions(model, tr_jump, child, jumpy).attribution.sum() + child.bias
        assert total == pytest.approx(row["attribution"], abs=1e-4)
