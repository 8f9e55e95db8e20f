"""Notebook 00's exercise check: passes the reference, names the input on which a wrong answer fails."""

from functools import partial

import pytest

from utils.checks import ExerciseFailed
from utils.exercises import nb00
from utils.tour import decode_residual

DECODE = partial(decode_residual)  # a handle the check does not hide (wrong answers build on it)


def test_the_reference_passes(capsys):
    nb00.check_decode_residual(decode_residual)
    assert "✓ Exercise 0.1 decode_residual: matches the reference on all 3 inputs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, problem",
    [
        (lambda model, resid: model.unembed(resid.unsqueeze(1))[:, 0], r"input 1 of 3 \(1 residual vectors .*values differ"),
        (lambda model, resid: DECODE(model, resid).softmax(-1), r"input 1 of 3 .*values differ"),
        (lambda model, resid: DECODE(model, resid)[0], r"expected shape \(1, 97\).*got shape \(97,\)"),
    ],
    ids=["no final norm", "probabilities instead of logits", "batch dimension dropped"],
)
def test_wrong_answers_fail_naming_the_input(wrong, problem):
    with pytest.raises(ExerciseFailed, match=problem):
        nb00.check_decode_residual(wrong)


def test_a_stub_is_named_as_not_written():
    def stub(model, resid):
        raise NotImplementedError("Exercise 0.1: Decode a residual stream")

    with pytest.raises(NotImplementedError, match="Exercise 0.1 decode_residual: not written yet"):
        nb00.check_decode_residual(stub)
