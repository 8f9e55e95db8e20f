import importlib
import pkgutil

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from utils import hooks, prompts, recall
from utils.models import tiny_model
from utils.sublayers import Sublayer

WORDS = ["<pad>"] + (
    "the of is in a capital city country france paris germany berlin italy rome spain madrid "
    "known for wine river tower famous located museum language spoken"
).split()
VOCAB = 97


@pytest.fixture(scope="module")
def word_model():
    """The tiny random model with a whitespace word tokenizer (offsets work as in real tokenizers)."""
    torch.set_grad_enabled(False)
    words = WORDS + [f"w{i}" for i in range(VOCAB - len(WORDS))]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    model = tiny_model(n_layers=3, d_vocab=VOCAB)
    # set_tokenizer would look the tokenizer up on the hub; assigning it is enough offline
    model.tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<pad>"
    )
    model.cfg.tokenizer_prepends_bos = False
    return model


def make_facts(model, rows):
    """Facts frame from (prompt, subject) pairs, with the model's own top-1 token as target."""
    frame = pd.DataFrame(
        [
            {
                "relation": "r",
                "subject": s,
                "prompt": p,
                "target": "x",
                "subject_start": p.index(s),
                "subject_end": p.index(s) + len(s),
            }
            for p, s in rows
        ]
    )
    frame["target_token"] = [int(model(model.to_tokens(p))[0, -1].argmax()) for p in frame.prompt]
    located, skipped = recall.locate_subjects(model, frame)
    assert skipped == 0
    return located


def test_the_package_reexports_every_public_name_of_its_modules():
    modules = [m.name for m in pkgutil.iter_modules(recall.__path__)]
    assert {"facts", "knockout", "enrichment", "extraction", "heads", "harness"} <= set(modules)
    for name in modules:
        module = importlib.import_module(f"utils.recall.{name}")
        assert module.__doc__ and module.__all__, name
        for public in module.__all__:
            assert public in recall.__all__ and getattr(recall, public) is getattr(module, public)
    assert recall.project is prompts.project  # as callers such as utils.tuned_lens import it


PROMPTS = [
    ("the capital of france is", "france"),
    ("the famous tower in paris is located in the country", "paris"),
    ("germany is a country known for", "germany"),
    ("the language spoken in spain is", "spain"),
]


def test_locate_subjects_spans_and_failures(word_model):
    frame = pd.DataFrame(
        [
            {
                "prompt": "the capital of france is",
                "subject_start": 15,
                "subject_end": 21,
            },  # france
            {
                "prompt": "the capital of france is",
                "subject_start": 3,
                "subject_end": 4,
            },  # only a space
            {
                "prompt": "the capital of france",
                "subject_start": 15,
                "subject_end": 21,
            },  # ends at the last token
            {"prompt": "rome river tower is", "subject_start": 0, "subject_end": 10},  # two tokens
        ]
    )
    located, skipped = recall.locate_subjects(word_model, frame)
    assert skipped == 2
    assert located[["subj_tok_start", "subj_tok_end", "n_tokens"]].values.tolist() == [
        [3, 4, 5],
        [0, 2, 4],
    ]


def test_window_layers_and_masks():
    assert list(recall.window_layers(0, 5, 30)) == [0, 1, 2]
    assert list(recall.window_layers(10, 5, 30)) == [8, 9, 10, 11, 12]
    assert list(recall.window_layers(29, 4, 30)) == [27, 28, 29]
    with pytest.raises(ValueError, match="center"):
        recall.window_layers(30, 5, 30)
    rows = {
        s: recall.knockout_mask(7, 5, 1, 3, s)[5].nonzero().flatten().tolist()
        for s in recall.KNOCKOUT_SOURCES
    }
    assert rows == {"subject": [1, 2], "non-subject": [0, 3, 4], "last": [5], "first": [0]}
    assert (
        recall.knockout_mask(7, 5, 1, 3, "subject").sum() == 2
    )  # only edges into the last position
    with pytest.raises(ValueError, match="source"):
        recall.knockout_mask(7, 5, 1, 3, "object")
    with pytest.raises(ValueError, match="span"):
        recall.knockout_mask(7, 5, 3, 6, "subject")


def test_blocking_no_edges_and_resuming_is_exact(word_model):
    tokens = word_model.to_tokens("the capital of france is")
    n = tokens.shape[1]
    _, cache = word_model.run_with_cache(tokens)
    nothing = torch.zeros(1, n, n, dtype=torch.bool)
    for start in range(word_model.cfg.n_layers):
        resumed = hooks.run(
            word_model,
            cache[hooks.resid_pre(start)],
            hooks.block_attention(range(word_model.cfg.n_layers), nothing),
            start_at_layer=start,
        )
        assert torch.equal(resumed, word_model(tokens))


def test_batched_sweep_equals_the_plain_loop(word_model):
    facts = make_facts(word_model, PROMPTS)
    batched = recall.knockout_sweep(
        word_model, facts, window=2, fact_batch=3, rows_per_pass=7, progress=False
    )
    looped = recall.knockout_loop(word_model, facts, window=2)
    torch.testing.assert_close(batched.p_base, looped.p_base, atol=1e-6, rtol=0)
    assert (batched.p_new - looped.p_new).abs().max() < 1e-6
    base = word_model(word_model.to_tokens(facts.prompt[0]))[0, -1].softmax(-1)
    assert batched.p_base[0] == pytest.approx(float(base.max()), abs=1e-6)
    curves = batched.relative_change()
    assert list(curves.columns) == [recall.KNOCKOUT_LABELS[s] for s in recall.KNOCKOUT_SOURCES]
    assert curves.shape == (word_model.cfg.n_layers, 4) and not (curves.values == 0).all()
    minima = recall.knockout_minima(batched)
    assert set(minima) == set(curves.columns) and all(0 <= m["layer"] < 3 for m in minima.values())
    for label, m in minima.items():
        assert m["min_change_pct"] == pytest.approx(curves[label].min())
        assert m["interval"]["low"] <= m["min_change_pct"] <= m["interval"]["high"]
    rows = [True, False, True, True]
    subset = batched.relative_change(rows)
    torch.testing.assert_close(
        torch.tensor(subset.values), batched.change()[..., [0, 2, 3]].mean(-1).T
    )
    assert recall.knockout_minima(batched, rows)["subject → last"]["n"] == 3


def test_cutting_subject_to_last_in_every_layer_removes_the_subject(word_model):
    # the subject is the token right before the last one, so its only route to the last position
    # is the direct edge: cutting it in every layer makes the output independent of the subject
    rows = [("the capital city of france is", "france"), ("the capital city of italy is", "italy")]
    facts = make_facts(word_model, rows)
    facts["target_token"] = facts.target_token[0]  # read the same token in both
    every_layer = 2 * word_model.cfg.n_layers
    result = recall.knockout_sweep(
        word_model, facts, window=every_layer, centers=[1], sources=["subject"], progress=False
    )
    assert result.p_new[0, 0, 0] == pytest.approx(float(result.p_new[0, 0, 1]), abs=1e-6)
    assert abs(float(result.p_base[0] - result.p_base[1])) > 1e-4  # without the knockout it matters


def test_attributes_rate_on_a_hand_made_example():
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8]])
    eligible = torch.tensor(
        [True, False, True, True, True, True, True, True]
    )  # token 1 is a stopword
    attributes = torch.tensor([True, True, False, True, False, False, False, True])
    # row 0: top 5 = 0,1,2,3,4 -> eligible 0,2,3,4 -> keep 3: 0,2,3 -> attributes 0,3 -> 2/3
    # row 1: top 5 = 7,6,5,4,3 -> keep 3: 7,6,5 -> attribute 7 -> 1/3
    rate = recall.attributes_rate(logits, attributes, eligible, top=5, keep=3)
    torch.testing.assert_close(rate, torch.tensor([2 / 3, 1 / 3]))
    # fewer eligible tokens than `keep` in the top: the rate is over those that are there
    assert float(recall.attributes_rate(logits[:1], attributes, eligible, top=2, keep=3)) == 1.0
    with pytest.raises(ValueError, match="tokens"):
        recall.attributes_rate(logits, attributes, eligible[:4])


def test_attribute_sets_drop_stopwords_short_tokens_and_the_subject(word_model):
    keys = recall.token_keys(word_model.tokenizer, VOCAB)
    eligible = recall.eligible_tokens(keys)
    sets = recall.AttributeSets(word_model.tokenizer, keys, eligible)
    mask = sets.mask(["paris is the capital of france", "famous for wine"], subject="france")
    assert sorted(keys[i] for i in mask.nonzero().flatten()) == [
        "capital",
        "famous",
        "paris",
        "wine",
    ]
    assert not sets.mask([], "france").any()


def test_extraction_events_on_a_hand_made_example():
    top = torch.tensor([[5, 7, 7], [1, 2, 3]])  # [facts, layers]
    events = recall.extraction_events(top, torch.tensor([7, 4]))
    assert events.tolist() == [[False, True, True], [False, False, False]]
    rates, shares = recall.extraction_summary(
        events, torch.tensor([[True, False, False], [True, False, False]])
    )
    assert rates.attn.tolist() == [0.0, 0.5, 0.5] and rates.mlp.tolist() == [1.0, 0.0, 0.0]
    assert shares == {"attn_share": 0.5, "mlp_share": 1.0}
    heads = torch.zeros(2, 3, 4, dtype=torch.bool)
    heads[:, 2, 1] = True
    heads[0, 0, 3] = True
    assert recall.top_heads(heads, 2) == [(2, 1, 2), (0, 3, 1)]
    assert all(count == 0 for *_, count in recall.control_heads(heads, 3))
    assert recall.control_heads(heads, 20, exclude=[(2, 1), (0, 3)]) == [
        (layer, head, 0)
        for layer in range(3)
        for head in range(4)
        if (layer, head) not in {(2, 1), (0, 3)}
    ]
    with pytest.raises(ValueError, match="targets"):
        recall.extraction_events(top, torch.tensor([1]))


def test_ov_circuit_respects_grouped_query_heads():
    model = tiny_model(n_layers=1, n_heads=4, n_key_value_heads=2)
    tokens = torch.tensor([[5]])  # one position: each head's z is exactly its value vector
    _, cache = model.run_with_cache(tokens)
    x = cache[hooks.sublayer_input_hook(Sublayer(0, "attn"))][0, 0]
    for head in range(4):
        w_v, b_v, w_o = recall.ov_circuit(model, 0, head)
        torch.testing.assert_close(x @ w_v + b_v, cache[hooks.attn_point(0, "z")][0, 0, head])
        torch.testing.assert_close(
            w_v, model.blocks[0].attn.W_V[head]
        )  # TransformerLens's expanded view
    assert not torch.equal(recall.ov_circuit(model, 0, 0)[0], recall.ov_circuit(model, 0, 2)[0])
    with pytest.raises(ValueError, match="head"):
        recall.ov_circuit(model, 0, 4)


def test_experiments_run_and_agree_on_the_tiny_model(word_model):
    facts = make_facts(word_model, PROMPTS)
    keys = recall.token_keys(word_model.tokenizer, VOCAB)
    eligible = recall.eligible_tokens(keys)
    texts = {
        "france": ["paris wine river"],
        "paris": ["france tower museum"],
        "germany": ["berlin river"],
        "spain": [],
    }
    masks = recall.attribute_masks(word_model, facts, texts, eligible, keys)
    assert masks.shape == (4, VOCAB) and not masks[3].any()
    sets = {"own": masks, "other": recall.other_subject_masks(facts, masks)}
    readouts = recall.attribute_rates(
        word_model, facts, sets, eligible, top=20, keep=5, fact_batch=2,
        lenses={"logit lens": None, "identity": lambda h: h}, progress=False,
    )
    result = readouts["logit lens"]
    assert result.rates.shape == (2, 4, 3, len(recall.POSITIONS))
    # spain has no text, and paris's control (the next subject by name) is spain: both rates
    # are compared on france and germany only
    assert result.rows("own").tolist() == [True, True, True, False]
    assert result.rows("own", "other").tolist() == [True, False, True, False]
    assert result.of("own").shape[0] == 3 and result.of("own", "other").shape[0] == 2
    torch.testing.assert_close(
        result.specific("own", "other"), result.rates[0, [0, 2]] - result.rates[1, [0, 2]]
    )
    assert result.baseline("own", "other").shape == (2,)
    rates = recall.mean_table(result.of("own"))
    assert list(rates.columns) == list(recall.POSITIONS) and len(rates) == 3
    assert ((result.rates >= 0) & (result.rates <= 1)).all()
    assert ((result.embedding >= 0) & (result.embedding <= 1)).all()
    # an identity lens reads the same as the logit lens, in the same pass
    torch.testing.assert_close(readouts["identity"].rates, result.rates)
    keep = result.rows("own", "other").numpy()
    facts, masks = facts[keep].reset_index(drop=True), masks[keep]
    result = recall.attribute_rates(
        word_model, facts, {"own": masks}, eligible, 20, 5, 2, progress=False
    )["logit lens"]
    enrichment = recall.enrichment_knockout(
        word_model,
        facts,
        masks,
        eligible,
        measure_layer=2,
        window=1,
        top=20,
        keep=5,
        fact_batch=3,
        progress=False,
    )
    # same quantity, two code paths
    torch.testing.assert_close(enrichment.base, result.of("own")[:, 2, 2])
    table = enrichment.table()
    assert list(table.index) == [0, 1] and list(table.columns) == ["mlp", "attn"]
    assert enrichment.early_change("mlp").shape == (2,)
    top = recall.sublayer_top_tokens(word_model, facts, fact_batch=3, progress=False)
    assert top["attn"].shape == (2, 3) and top["heads"].shape == (2, 3, 4) and "attn_blocked" not in top
    hits, examples, found = recall.head_attribute_hits(
        word_model, facts, [(1, 0), (2, 3)], k=VOCAB, n_examples=2, progress=False
    )
    # with k = the whole vocabulary every target is found
    assert hits.hit_rate.tolist() == [1.0, 1.0] and found.all() and found.shape == (2, 2)
    for inputs in recall.OV_INPUTS:
        hits, _, _ = recall.head_attribute_hits(
            word_model, facts, [(1, 0)], k=3, inputs=inputs, progress=False
        )
        assert 0 <= hits.hit_rate[0] <= 1
    with pytest.raises(ValueError, match="inputs"):
        recall.head_attribute_hits(word_model, facts, [(1, 0)], inputs="weights", progress=False)
    assert len(examples) == 2 and len(examples[0]["top tokens"]) == VOCAB


def test_unindexed_facts_are_refused(word_model):
    facts = make_facts(word_model, PROMPTS).iloc[1:]
    with pytest.raises(ValueError, match="reset_index"):
        recall.knockout_sweep(word_model, facts, window=1, progress=False)


def test_enrichment_knockout_equals_full_runs_with_zeroed_sublayers(word_model):
    facts = make_facts(word_model, PROMPTS)
    keys = recall.token_keys(word_model.tokenizer, VOCAB)
    eligible = recall.eligible_tokens(keys)
    masks = torch.zeros(len(facts), VOCAB, dtype=torch.bool)
    masks[:, 30:80] = True  # a broad hand-made attribute set so that rates are not all zero
    table = recall.enrichment_knockout(
        word_model,
        facts,
        masks,
        eligible,
        measure_layer=2,
        window=2,
        top=40,
        keep=10,
        fact_batch=2,
        progress=False,
    ).table()
    assert list(table.index) == [0]  # the only 2-layer window that ends below layer 2
    for kind in ("mlp", "attn"):
        for start in table.index:
            store = {}
            fwd = hooks.zero_ablate(
                [Sublayer(layer, kind) for layer in range(start, start + 2)]
            )
            rates = []
            for row in facts.itertuples():
                hooks.run(
                    word_model,
                    word_model.to_tokens(row.prompt),
                    fwd + hooks.capture([hooks.resid_post(2)], store),
                )
                logits = recall.project(
                    word_model, store[hooks.resid_post(2)][0, row.subj_tok_end - 1]
                )
                rates.append(
                    float(recall.attributes_rate(logits, masks[row.Index], eligible, 40, 10))
                )
            assert table.loc[start, kind] == pytest.approx(sum(rates) / len(rates), abs=1e-6)
    assert (table.values > 0).any()


@pytest.mark.embedded
def test_embedded_model_spans_and_batched_knockouts(embedded):
    prompt = "The Eiffel Tower is located in the city of"
    facts = pd.DataFrame(
        [{"prompt": prompt, "subject": "Eiffel Tower", "subject_start": 4, "subject_end": 16}]
    )
    located, skipped = recall.locate_subjects(embedded, facts)
    tokens = embedded.to_tokens(prompt)[0]
    span = slice(located.subj_tok_start[0], located.subj_tok_end[0])
    assert skipped == 0 and embedded.to_string(tokens[span]).strip() == "Eiffel Tower"
    assert located.n_tokens[0] == len(tokens)
    located["target_token"] = int(embedded(tokens[None])[0, -1].argmax())
    centers = [5, 20]
    batched = recall.knockout_sweep(embedded, located, window=5, centers=centers, progress=False)
    looped = recall.knockout_loop(embedded, located, window=5, centers=centers)
    assert (batched.p_new - looped.p_new).abs().max() < 1e-5


def test_other_subject_masks_swap_sets_between_subjects():
    facts = pd.DataFrame({"subject": ["b", "a", "c", "a"]})
    masks = torch.eye(4, dtype=torch.bool)  # row i marks token i
    swapped = recall.other_subject_masks(facts, masks)
    # a -> b (row 0), b -> c (row 2), c -> a (first row about a: 1)
    assert swapped.float().argmax(-1).tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match="two subjects"):
        recall.other_subject_masks(facts[facts.subject == "a"], masks[[1, 3]])


def test_knockout_windows_end_below_the_measured_layer():
    assert recall.knockout_starts(25, 5) == list(range(21))
    assert all(s + 5 - 1 < 25 for s in recall.knockout_starts(25, 5))
    assert recall.knockout_starts(25, 5, stride=10) == [0, 10, 20]
    with pytest.raises(ValueError, match="measure_layer >= window"):
        recall.knockout_starts(3, 5)


def test_fact_attribute_texts_follow_the_facts_graph():
    table = pd.DataFrame(
        {
            "subject": ["Eiffel Tower", "Paris", "France", "France", "Lyon"],
            "target": ["Paris", "France", "Europe", "euro", "France"],
        }
    )
    texts = recall.fact_attribute_texts(table, ["Eiffel Tower", "France", "Nowhere"])
    assert texts["Eiffel Tower"] == ["France", "Paris"]  # its target, and the target's target
    assert texts["France"] == ["Europe", "Lyon", "Paris", "euro"]  # targets, and who points to it
    assert texts["Nowhere"] == []
    assert recall.attribute_texts(["France"], "facts", table)["France"] == texts["France"]
    with pytest.raises(ValueError, match="facts_table"):
        recall.attribute_texts(["France"], "facts")
    with pytest.raises(FileNotFoundError, match="none of"):
        recall.attribute_texts(["France"], "no-such-source")


def _result(change_by_source):
    """A KnockoutResult whose relative changes (%) are the given [source][center][fact] lists."""
    p_new = 1 + torch.tensor(change_by_source, dtype=torch.float) / 100
    return recall.KnockoutResult(
        ("subject", "non-subject", "last"), [0, 1, 2], 1, torch.ones(p_new.shape[-1]), p_new
    )


def test_knockout_verdict_statistics_on_hand_made_curves():
    # subject hurts most at layer 2, non-subject at layer 0, last hardly at all; 40 identical facts
    facts = 40
    result = _result(
        [
            [[-10] * facts, [-20] * facts, [-80] * facts],
            [[-60] * facts, [-30] * facts, [-10] * facts],
            [[-1] * facts, [-2] * facts, [-1] * facts],
        ]
    )
    assert recall.minimum_layer(result, "subject").estimate == 2
    gap = recall.minimum_layer_gap(result, "non-subject", "subject")
    assert gap.estimate == gap.low == gap.high == 2 and gap.n == facts
    margin = recall.smallest_effect_margin(result, "last", ["subject", "non-subject"])
    assert margin.estimate == pytest.approx(-2 - (-60))


def test_peak_statistics_pick_each_positions_best_layer():
    values = torch.zeros(30, 3, len(recall.POSITIONS))
    values[:, 1, recall.POSITIONS.index("last subject")] = 0.5
    values[:, 2, recall.POSITIONS.index("first token")] = 0.2
    peaks = recall.position_peaks(values)
    assert peaks["last subject"]["layer"] == 1 and peaks["last subject"]["estimate"] == 0.5
    assert peaks["first token"]["layer"] == 2 and peaks["first token"]["n"] == 30
    advantage = recall.peak_advantage(values, "last subject", ["first token", "first subject"])
    assert advantage.estimate == pytest.approx(0.3) and advantage.low == pytest.approx(0.3)


@pytest.mark.parametrize("norm", ["RMSPre", "LNPre", "LN"])
def test_head_top_tokens_read_each_head_like_project(norm):
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=97, n_ctx=16,
                                  act_fn="gelu", normalization_type=norm, seed=0)
    model = HookedTransformer(cfg)
    if norm == "LNPre":
        model.b_U.data.normal_(std=0.5)  # a bias makes the norm's scale matter to the argmax
    for n in (70, 5):  # 70: the factored readout; 5 facts: fewer than pay for it
        z = torch.randn(n, 4, 8, generator=torch.Generator().manual_seed(0))
        writes = torch.einsum("nhe,hed->nhd", z, model.blocks[1].attn.W_O)
        direct = recall.project(model, writes).argmax(-1)
        assert torch.equal(recall.head_top_tokens(model, z, 1), direct)


@pytest.mark.parametrize("norm", ["RMSPre", "LNPre"])
def test_head_readout_ranks_tokens_like_project(norm):
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, d_vocab=97, n_ctx=16,
                                  act_fn="gelu", normalization_type=norm, seed=0)
    model = HookedTransformer(cfg)
    w_o = model.blocks[1].attn.W_O[2]
    values = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(1))
    factored = (values @ recall.head_readout(model, w_o)).topk(10, dim=-1).indices
    direct = recall.project(model, values @ w_o).topk(10, dim=-1).indices
    assert torch.equal(factored, direct)


def test_head_readout_refuses_a_norm_with_weights():
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_vocab=11, n_ctx=8,
                                  attn_only=True, normalization_type="LN", seed=0)
    model = HookedTransformer(cfg)
    with pytest.raises(ValueError, match="does not factor"):
        recall.head_readout(model, model.blocks[0].attn.W_O[0])


def test_argmax_of_product_in_blocks_equals_the_whole_product():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 4, 23, generator=gen)
    scale, bias = torch.rand(3, 5, generator=gen) + 0.1, torch.randn(23, generator=gen)
    whole = ((a @ b) * scale[..., None] + bias).argmax(-1)
    for block in (1, 4, 7, 23, 64):  # blocks that split the columns unevenly, and one that holds them all
        assert torch.equal(recall.argmax_of_product(a, b, scale, bias, block), whole)
    tied = recall.argmax_of_product(torch.ones(1, 1), torch.ones(1, 6), torch.ones(1), torch.zeros(6), block=2)
    assert tied.tolist() == [0]  # a tie keeps the first index, as torch.argmax does


@pytest.mark.parametrize("layers", [[2], [1, 2], [0, 1, 2]])
def test_blocked_extraction_reruns_the_last_position_exactly(word_model, layers):
    facts = make_facts(word_model, PROMPTS)
    top = recall.sublayer_top_tokens(word_model, facts, fact_batch=3, block_subject_layers=layers, progress=False)
    assert "heads" in top and top["attn_blocked"].shape == top["attn"].shape == (len(facts), 3)
    for row in facts.itertuples():  # reference: each prompt alone, a full forward pass with the edges cut
        tokens = word_model.to_tokens(row.prompt, prepend_bos=word_model.cfg.default_prepend_bos)
        n = tokens.shape[1]
        mask = recall.knockout_mask(n, n - 1, row.subj_tok_start, row.subj_tok_end, "subject")
        with hooks.attached(word_model, hooks.block_attention(layers, mask)):
            _, cache = word_model.run_with_cache(tokens)
        for kind in ("attn", "mlp"):
            expected = [int(recall.project(word_model, cache[Sublayer(layer, kind).out_hook][0, -1]).argmax()) for layer in range(3)]
            assert top[f"{kind}_blocked"][row.Index].tolist() == expected
    changed = (top["attn_blocked"] != top["attn"]) | (top["mlp_blocked"] != top["mlp"])
    assert not changed[:, : layers[0]].any() and changed.any()  # below the cut nothing moves; above, something does
    with pytest.raises(ValueError, match="block_subject_layers"):
        recall.sublayer_top_tokens(word_model, facts, block_subject_layers=[3], progress=False)


def _sink_result(non_subject, first, facts=40, noise=0.0):
    """Four knockout curves over centres [0, 1, 2, 3]: subject lowest at 3, last hardly at all."""
    gen = torch.Generator().manual_seed(0)
    curves = [[-5, -10, -30, -80], non_subject, [-1, -2, -1, -1], first]
    change = torch.tensor(curves, dtype=torch.float)[:, :, None].repeat(1, 1, facts)
    change = change + noise * torch.randn(change.shape, generator=gen)
    return recall.KnockoutResult(
        recall.KNOCKOUT_SOURCES, [0, 1, 2, 3], 1, torch.ones(facts), 1 + change / 100
    )


def test_relation_is_judged_against_the_first_token_curve():
    rows = torch.ones(40, dtype=torch.bool).numpy()
    # the non-subject curve is the sink's plus an early relation effect at layer 1
    result = _sink_result([-20, -70, -40, -10], [-20, -20, -40, -10], noise=1.0)
    layer, excess = recall.excess_minimum(result, "non-subject", "first", rows)
    assert layer == 1 and excess.high < 0
    gap = recall.minimum_layer_gap(result, "non-subject", "subject", rows, baseline="first")
    assert gap.estimate == 2  # subject at 3 minus relation-beyond-sink at 1
    claims, found = recall.knockout_claims(result, rows, n_layers=4, min_n=30)
    assert [c["verdict"] for c in claims] == ["holds", "holds", "holds"]
    assert found["relation_layer"] == 1
    # the non-subject curve is the sink's alone: nothing beyond it, the claim cannot be tested
    result = _sink_result([-20, -20, -90, -10], [-20, -20, -90, -10])
    claims, _ = recall.knockout_claims(result, rows, n_layers=4, min_n=30)
    assert claims[1]["verdict"] == "not testable here" and "first token" in claims[1]["interval"]
    claims, _ = recall.knockout_claims(result, rows, n_layers=4, min_n=100)
    assert {c["verdict"] for c in claims} == {"too few"}


def test_curve_bands_hold_the_mean_and_the_knockout_figure_shares_its_y_range():
    result = _sink_result([-20, -70, -40, -10], [-20, -20, -40, -10], noise=5.0)
    rows = torch.ones(40, dtype=torch.bool).numpy()
    bands = recall.curve_bands(result, rows)
    assert set(bands) == set(recall.KNOCKOUT_LABELS.values())
    subject = bands["subject → last"]
    assert list(subject.index) == [0, 1, 2, 3]
    assert (subject.low <= subject["mean"]).all() and (subject["mean"] <= subject.high).all()
    assert recall.curve_bands(result, ~rows)["subject → last"]["mean"].isna().all()
    half = rows.copy()
    half[:20] = False
    fig = recall.plot_knockout(result, {"a": rows, "b": half}, "title", excess_in=["b"])
    assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim()
    assert [len(ax.get_lines()) for ax in fig.axes] == [5, 6]  # 4 curves + 0 line, + the excess
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_enrichment_claims_name_a_rise_a_rise():
    # knockouts raise the rate: the paper's expected fall comes out "opposite", the title says so
    base = torch.full((40,), 0.2)
    knocked = torch.stack([torch.full((2, 40), 0.4), torch.full((2, 40), 0.3)])
    gen = torch.Generator().manual_seed(0)
    knocked = knocked + 0.01 * torch.randn(knocked.shape, generator=gen)
    enrichment = recall.EnrichmentResult(10, 2, [0, 4], base, knocked)
    rows, changes = recall.enrichment_claims(enrichment, min_n=30)
    assert changes["mlp"].estimate == pytest.approx(0.2, abs=0.01)
    assert [r["verdict"] for r in rows] == ["opposite", "opposite"]  # MLP raises it more, too
    title = recall.enrichment_title(changes)
    assert title.startswith("Early MLP knockouts raise the rate by 20.") and "raise it by" in title
    changes["attn"] = recall.fact_interval(torch.zeros(40))
    title = recall.enrichment_title(changes)
    assert title.endswith("attention knockouts leave it unchanged (n=40)")
    assert "-" not in rows[0]["here"].split("knockout;")[-1]  # the effect is named, not signed


def test_extraction_and_ov_claims():
    gen = torch.Generator().manual_seed(0)
    attn = torch.rand(60, 4, generator=gen) < 0.5
    events = {"attn": attn, "mlp": torch.zeros(60, 4, dtype=torch.bool), "attn_blocked": attn}
    rows, found = recall.extraction_claims(events, min_n=30)
    assert rows[0]["verdict"] == "holds" and rows[1]["verdict"] == "within noise"
    assert found["blocked"].estimate == 0
    hits = torch.zeros(60, 4, dtype=torch.bool)
    hits[:, :2] = torch.rand(60, 2, generator=gen) < 0.6
    row, margin = recall.ov_claim(hits, 2, min_n=30)
    assert row["verdict"] == "holds" and margin.low > 0 and row["n"] == 60
