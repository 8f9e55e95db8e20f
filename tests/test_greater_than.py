import pandas as pd
import pytest
import torch

from utils import circuits, hooks
from utils import greater_than as G
from utils import transcoders as T
from utils.models import tiny_model, word_tokenizer

WORDS = "The war lasted from the year to".split()


def tiny_tokenizer(number_piece: str, numbers: list[str]):
    """The greater-than words plus ``numbers``, which split into pieces matching ``number_piece``."""
    return word_tokenizer([*WORDS, *numbers], number_piece)


@pytest.fixture(scope="module")
def gpt2_like():
    """Years as 'century' + 'YY' tokens, as GPT-2 writes them."""
    return tiny_tokenizer(r"\d\d", G.TWO_DIGITS)


@pytest.fixture(scope="module")
def llama_like():
    """Numbers as single digits, as SmolLM2 / Llama write them."""
    return tiny_tokenizer(r"\d", list(G.DIGITS))


@pytest.fixture(scope="module")
def digit_years():
    """A tiny model that writes years as single digits, its greater-than task and three prompts."""
    tokenizer = tiny_tokenizer(r"\d", list(G.DIGITS))  # a fresh one: set_tokenizer changes it
    model = tiny_model(d_vocab=len(tokenizer), seed=1)
    model.set_tokenizer(tokenizer)
    return model, circuits.greater_than_task(model), G.greater_than_prompts([12, 32, 75])


def test_the_year_split_is_read_from_the_tokenizer(gpt2_like, llama_like):
    assert G.year_split(gpt2_like) == "two_digit" and G.year_split(llama_like) == "digits"
    assert gpt2_like.convert_ids_to_tokens(G.answer_tokens(gpt2_like, "two_digit"))[32] == "32"
    assert llama_like.convert_ids_to_tokens(G.answer_tokens(llama_like, "digits")) == list(G.DIGITS)
    with pytest.raises(ValueError, match="not single tokens"):
        G.answer_tokens(llama_like, "two_digit")


def test_a_tokenizer_that_writes_years_otherwise_is_refused():
    three_digits = tiny_tokenizer(r"\d\d\d|\d", [f"{n:03d}" for n in range(1000)] + list(G.DIGITS))
    with pytest.raises(ValueError, match="neither one two-digit token nor single digits"):
        G.year_split(three_digits)


def test_two_digit_probability_difference_counts_equal_years_as_earlier():
    probs = torch.zeros(3, 100)
    probs[0, 33], probs[1, 32], probs[2, [10, 90]] = 1.0, 1.0, 0.5
    start = torch.tensor([32, 32, 50])
    assert torch.equal(G.year_prob_diff(probs, start), torch.tensor([1.0, -1.0, 0.0]))


def test_probability_difference_picks_the_variant(gpt2_like):
    prompts = G.greater_than_prompts([32, 75])
    years = torch.zeros(2, 100)
    years[:, 60] = 1.0  # the end year 1760: later than 1732, earlier than 1775
    assert torch.equal(
        G.probability_difference(years, prompts, "two_digit"), torch.tensor([1.0, -1.0])
    )
    digits = torch.zeros(2, 10)
    digits[:, 6] = 1.0
    assert torch.equal(
        G.probability_difference(digits, prompts, "digits"), torch.tensor([1.0, -1.0])
    )


def test_circuits_keeps_the_names_it_had():
    assert circuits.prob_diff is G.prob_diff and circuits.GT_TEMPLATE == G.GT_TEMPLATE
    assert circuits.greater_than_prompts is G.greater_than_prompts


@pytest.mark.parametrize(("name", "n_answers", "later_than_1732"), [("gpt2_like", 100, 67), ("llama_like", 10, 6)])
def test_the_task_reads_and_scores_either_tokenisation(request, name, n_answers, later_than_1732):
    tokenizer = request.getfixturevalue(name)
    task = G.GreaterThan.for_tokenizer(tokenizer)
    assert len(task.answer_ids) == len(task.labels) == n_answers
    later, earlier = task.later_earlier(32)
    assert len(later) == later_than_1732 and not set(later) & set(earlier)
    prompt = G.greater_than_prompts([32]).prompt[0]
    pieces = [tokenizer.decode([t]).strip() for t in tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    assert "".join([p for p in pieces if p in task.labels][task.start_year_tail]) == "32"


@pytest.mark.parametrize("name", ["gpt2_like", "llama_like"])
def test_answer_probabilities_on_a_model_with_that_tokenizer(request, name):
    tokenizer = request.getfixturevalue(name)
    model = tiny_model(d_vocab=len(tokenizer), seed=1)
    model.set_tokenizer(tokenizer)
    task = circuits.greater_than_task(model)
    prompts = G.greater_than_prompts([32, 75])
    probs = circuits.answer_probs(model, task, prompts.prompt)
    tokens = model.to_tokens(list(prompts.prompt), prepend_bos=False)
    with torch.no_grad():
        expected = model(tokens)[:, -1].softmax(-1)[:, list(task.answer_ids)]
    torch.testing.assert_close(probs, expected)
    assert circuits.mean_prob_diff(model, task, prompts) == pytest.approx(  # float32 sums in another order
        float(task.probability_difference(expected, prompts).mean()), abs=1e-6
    )


def test_start_years_spread_over_every_decade():
    assert G.spread_starts(80) == list(range(10, 90))
    starts = G.spread_starts(8)
    assert starts[0] == 10 and starts[-1] == 89 and len(set(starts)) == 8
    assert {s // 10 for s in starts} == set(range(1, 9))
    with pytest.raises(ValueError, match="between 1 and 80"):
        G.spread_starts(81)


def test_a_run_resumed_from_the_clean_run_equals_a_full_run(digit_years):
    model, task, prompts = digit_years
    run = circuits.clean_run(model, prompts.prompt)
    means = circuits.mean_writes(model, prompts.prompt, [1])
    neurons = circuits.mean_neuron_acts(model, prompts.prompt, [1])
    edits = [
        ({}, ()),
        ({1: circuits.mean_write_fn(means[1])}, ()),
        ({}, circuits.neurons_kept(neurons, {1: torch.tensor([0, 3])})),
        ({}, [(hooks.embed(), lambda act, hook: act * 0.5)]),  # outside the blocks: from the tokens
    ]
    for replacements, extra in edits:
        full = circuits.answer_probs(model, task, prompts.prompt, replacements, extra)
        resumed = circuits.answer_probs(model, task, prompts.prompt, replacements, extra, clean=run)
        torch.testing.assert_close(resumed, full)
    assert circuits.first_edited_layer({2: None}, [(hooks.mlp_post(1), None)], 4) == 1
    assert circuits.first_edited_layer({}, [], 4) == 4
    assert circuits.first_edited_layer({2: None}, [(hooks.embed(), None)], 4) == -1
    with pytest.raises(ValueError, match="other prompts"):
        circuits.answer_probs(model, task, prompts.prompt[:2], clean=run)


def test_unit_scores_and_layer_effects_resumed_from_the_clean_run_equal_full_runs(digit_years):
    model, task, prompts = digit_years
    run = circuits.clean_run(model, prompts.prompt)
    neurons = circuits.mean_neuron_acts(model, prompts.prompt, [1])
    tcs = {1: T.random_transcoder(model.cfg.d_model, 16, seed=1)}
    features = circuits.mean_feature_acts(model, prompts.prompt, tcs)
    for means, dictionaries in ((neurons, None), (features, tcs)):
        full = circuits.unit_scores(model, task, prompts, means, dictionaries)
        resumed = circuits.unit_scores(model, task, prompts, means, dictionaries, clean=run)
        assert set(full) == {1} and bool(full[1].abs().sum() > 0)
        for layer in full:
            torch.testing.assert_close(resumed[layer], full[layer], atol=1e-6, rtol=1e-4)
    effects = circuits.layer_effects(model, task, prompts, [0, 1])
    resumed = circuits.layer_effects(model, task, prompts, [0, 1], clean=run)
    torch.testing.assert_close(torch.tensor(resumed.values), torch.tensor(effects.values))


def test_precision_at_k_measures_each_ablation_from_its_own_baseline(digit_years):
    model, task, prompts = digit_years
    means = circuits.mean_writes(model, prompts.prompt, [1])
    baseline = ({1: circuits.mean_write_fn(means[1])}, ())  # far from the real model
    units = {1: torch.tensor([0, 1])}
    unchanged = circuits.precision_at_k(model, task, prompts, units, lambda layer, unit: baseline, 1e-6, baseline)
    assert unchanged == 0.0  # ablating nothing beyond the baseline moves nothing
    zeroed = circuits.precision_at_k(model, task, prompts, units, lambda layer, unit: ({1: lambda x, real: torch.zeros_like(real)}, ()), 1e-6, baseline)
    assert zeroed == 1.0


def test_window_effects_ablate_each_window_jointly(digit_years):
    model, task, prompts = digit_years
    layers = list(range(model.cfg.n_layers))
    singles = circuits.layer_effects(model, task, prompts, layers)
    one_wide = circuits.window_effects(model, task, prompts, layers, 1)
    torch.testing.assert_close(torch.tensor(one_wide.values), torch.tensor(singles.values))
    joint = circuits.window_effects(model, task, prompts, layers, 2)
    means = circuits.mean_writes(model, prompts.prompt, [0, 1])
    both = {layer: circuits.mean_write_fn(means[layer]) for layer in (0, 1)}
    expected = circuits.mean_prob_diff(model, task, prompts) - circuits.mean_prob_diff(model, task, prompts, both)
    assert list(joint.index) == list(range(len(layers) - 1))
    assert joint[0] == pytest.approx(expected, abs=1e-6)


def test_best_window_is_the_one_whose_ablation_lowers_the_difference_most():
    joint = pd.Series({0: -0.1, 1: 0.02, 2: 0.3, 3: 0.1})
    assert circuits.best_window(joint, 3) == ([2, 3, 4], pytest.approx(0.3))
    assert circuits.best_window(pd.Series({4: -0.2, 5: -0.05}), 2)[0] == [5, 6]


def test_a_bos_model_reads_the_prompts_after_bos_and_answers_at_the_last_position(bos_model):
    model = bos_model([*WORDS, *G.DIGITS], seed=1)  # as Gemma-3: default_prepend_bos, <bos> first
    task = circuits.greater_than_task(model)
    prompts = G.greater_than_prompts([32, 75])
    tokens = circuits.prompt_tokens(model, prompts.prompt)
    plain = model.to_tokens(list(prompts.prompt), prepend_bos=False)
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all() and torch.equal(tokens[:, 1:], plain)
    pieces = [model.to_string(t).strip() for t in tokens[0]]  # the start year as notebook 03 finds it
    start = [i for i, p in enumerate(pieces) if p in task.labels][task.start_year_tail]
    assert [pieces[i] for i in start] == ["3", "2"] and start == [9, 10]
    with torch.no_grad():
        expected = model(tokens)[:, -1].softmax(-1)[:, list(task.answer_ids)]
    torch.testing.assert_close(circuits.answer_probs(model, task, prompts.prompt), expected)
    run = circuits.clean_run(model, prompts.prompt)
    assert torch.equal(run.tokens, tokens) and run.sinks[:, 0].all()  # BOS, position 0: the sink
    edit = {1: circuits.mean_write_fn(circuits.mean_writes(model, prompts.prompt, [1])[1])}
    torch.testing.assert_close(
        circuits.answer_probs(model, task, prompts.prompt, edit, clean=run),
        circuits.answer_probs(model, task, prompts.prompt, edit),
    )
