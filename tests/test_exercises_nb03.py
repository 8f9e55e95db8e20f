"""Notebook 03's exercise checks pass the reference and fail wrong answers with a message naming the input."""

from functools import partial

import pandas as pd
import pytest

from utils import circuits as C
from utils.checks import ExerciseFailed
from utils.exercises import nb03

REFERENCE = partial(C.feature_attributions)  # a handle the check does not hide


def test_references_pass(capsys):
    nb03.check_feature_attributions(C.feature_attributions)
    nb03.check_head_terms(C.head_terms)
    assert capsys.readouterr().out.count("✓") == 4  # each: the inputs, then completeness


@pytest.mark.parametrize(
    "wrong",
    [
        lambda acts, w_dec, v: w_dec @ v,  # the weight only, no activation
        lambda acts, w_dec, v: acts * (w_dec / w_dec.norm(dim=1, keepdim=True) @ v),  # decoder rows normalised
        lambda acts, w_dec, v: acts * (w_dec @ v).abs(),  # sign lost
    ],
)
def test_wrong_feature_attributions_fail(wrong):
    with pytest.raises(ExerciseFailed, match=r"input 1 of 2 \(acts \[6\]"):
        nb03.check_feature_attributions(wrong)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda pattern, values, w_o, v: values @ (w_o @ v),  # pattern forgotten
        lambda pattern, values, w_o, v: pattern * (values @ (w_o @ v)).sum(),  # summed over sources too early
    ],
)
def test_wrong_head_terms_fail(wrong):
    with pytest.raises(ExerciseFailed, match="input 1 of 2 \\(5 sources"):
        nb03.check_head_terms(wrong)


def test_completeness_catches_a_term_that_passes_no_random_case(monkeypatch):
    """A learner's function returning the right numbers only on the random cases still fails completeness."""
    calls = {"n": 0}

    def sneaky(acts, w_dec, v):
        calls["n"] += 1
        out = REFERENCE(acts, w_dec, v)
        return out if calls["n"] <= 2 else 2 * out

    with pytest.raises(ExerciseFailed, match="completeness"):
        nb03.check_feature_attributions(sneaky)


def _top(table, branches, by_abs=True, leaves=True):
    """Written from the statement; ``by_abs`` False ranks signed values, ``leaves`` False drops the leaf rows."""
    key = table.attribution.abs() if by_abs else table.attribution
    ranked = table.loc[key.sort_values(ascending=False).index]
    expandable = ranked.kind.isin(["feature", "head"])
    parts = [ranked[expandable].head(branches)] + ([ranked[~expandable].head(branches)] if leaves else [])
    return pd.concat(parts)


def test_top_contributions_passes_a_written_solution_and_fails_wrong_ones():
    assert nb03.check_top_contributions(_top) is _top
    for wrong in (partial(_top, by_abs=False), partial(_top, leaves=False)):
        with pytest.raises(ExerciseFailed, match="Exercise 3.1 top_contributions: input 1 of 4"):
            nb03.check_top_contributions(wrong)
    with pytest.raises(ExerciseFailed, match="write it yourself"):
        nb03.check_top_contributions(lambda table, branches: C.top_contributions(table, branches))
