from functools import partial

import pytest
import torch

from utils import hooks, recall
from utils.checks import ExerciseFailed
from utils.exercises import nb01

KNOCKOUT = partial(recall.knockout_mask)  # handles the checks do not hide (wrong answers build on them)
RATE = partial(recall.attributes_rate)


def test_reference_solutions_pass(capsys):
    nb01.check_knockout_mask(recall.knockout_mask)
    nb01.check_attributes_rate(RATE)
    assert capsys.readouterr().out.count("✓") == 2


def _mask_including_last(n_pos, last, s0, s1, source):
    mask = KNOCKOUT(n_pos, last, s0, s1, source)
    if source == "non-subject":
        mask[last, last] = True  # wrong: the last position is not a non-subject source
    return mask


def _mask_transposed(n_pos, last, s0, s1, source):
    return KNOCKOUT(n_pos, last, s0, s1, source).T  # wrong: edges out of the last position


def _mask_inclusive_end(n_pos, last, s0, s1, source):
    return KNOCKOUT(
        n_pos, last, s0, min(s1 + 1, last), source
    )  # wrong: subject end included


@pytest.mark.parametrize("wrong", [_mask_including_last, _mask_transposed, _mask_inclusive_end])
def test_wrong_knockout_masks_fail_naming_the_input(wrong):
    with pytest.raises(ExerciseFailed, match=r"knockout_mask: input \d+ of \d+ \(n_pos="):
        nb01.check_knockout_mask(wrong)


def _rate_ignoring_eligibility(logits, attributes, eligible, top, keep):
    return RATE(logits, attributes, torch.ones_like(eligible), top, keep)


def _rate_over_keep(logits, attributes, eligible, top, keep):
    ids = logits.topk(min(top, logits.shape[-1]), dim=-1).indices
    ok = eligible[ids]
    kept = ok & (ok.cumsum(-1) <= keep)
    hits = attributes.expand(*logits.shape).gather(-1, ids) & kept
    return hits.sum(-1) / keep  # wrong when fewer than `keep` are eligible


def _rate_of_lowest(logits, attributes, eligible, top, keep):
    return RATE(-logits, attributes, eligible, top, keep)


def _rate_as_float64(logits, attributes, eligible, top, keep):
    return RATE(logits, attributes, eligible, top, keep).double()


@pytest.mark.parametrize("wrong", [_rate_ignoring_eligibility, _rate_over_keep, _rate_of_lowest, _rate_as_float64])
def test_wrong_attributes_rates_fail_naming_the_input(wrong):
    with pytest.raises(ExerciseFailed, match=r"attributes_rate: input \d+ of \d+ \(logits \("):
        nb01.check_attributes_rate(wrong)


def test_stub_says_it_is_not_written():
    def stub(*args):
        raise NotImplementedError

    with pytest.raises(NotImplementedError, match="Exercise 1.1 knockout_mask: not written yet"):
        nb01.check_knockout_mask(stub)


def test_a_float_mask_fails_where_a_bool_mask_is_specified():
    with pytest.raises(ExerciseFailed, match="expected dtype torch.bool, got torch.float32"):
        nb01.check_knockout_mask(lambda *args: KNOCKOUT(*args).float())


def test_calling_the_reference_by_its_name_fails():
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb01.check_knockout_mask(lambda *args: recall.knockout_mask(*args))


def test_no_eligible_token_is_among_the_inputs():
    """The documented edge case (no eligible token: rate 0) is checked: a NaN there fails."""

    def nan_when_empty(logits, attributes, eligible, top, keep):
        rate = RATE(logits, attributes, eligible, top, keep)
        return rate if eligible.any() else torch.full_like(rate, float("nan"))

    with pytest.raises(ExerciseFailed, match="input 5 of 5 .*0 eligible"):
        nb01.check_attributes_rate(nan_when_empty)


def _knockout_probability(model, tokens, mask, layers, target):
    """Written from the statement: a hook on the attention scores of each layer of the window."""

    def cut(scores, hook):
        return scores.masked_fill(mask, float("-inf"))

    logits = model.run_with_hooks(tokens, fwd_hooks=[(hooks.attn_scores(layer), cut) for layer in layers])
    return logits[0, -1].softmax(-1)[target]


def test_knockout_probability_passes_a_written_solution_and_fails_wrong_ones():
    assert nb01.check_knockout_probability(_knockout_probability) is _knockout_probability

    def all_layers(model, tokens, mask, layers, target):
        return _knockout_probability(model, tokens, mask, range(model.cfg.n_layers), target)

    def after_softmax(model, tokens, mask, layers, target):  # zeroes the pattern: no renormalisation
        def cut(pattern, hook):
            return pattern.masked_fill(mask, 0.0)

        fwd = [(hooks.attn_point(layer, "pattern"), cut) for layer in layers]
        return model.run_with_hooks(tokens, fwd_hooks=fwd)[0, -1].softmax(-1)[target]

    for wrong in (all_layers, after_softmax):
        with pytest.raises(ExerciseFailed, match="Exercise 1.2 knockout_probability: input"):
            nb01.check_knockout_probability(wrong)
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb01.check_knockout_probability(
            lambda model, tokens, mask, layers, target: hooks.run(model, tokens, hooks.block_attention(layers, mask))[0, -1].softmax(-1)[target]
        )
