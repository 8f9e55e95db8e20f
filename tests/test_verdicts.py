import pytest

from utils import verdicts as V
from utils.stats import Interval


@pytest.mark.parametrize(
    "interval, expected, word",
    [
        (Interval(0.3, 0.1, 0.5, 40), "rise", V.HOLDS),
        (Interval(-0.3, -0.5, -0.1, 40), "fall", V.HOLDS),
        (Interval(-0.3, -0.5, -0.1, 40), "rise", V.OPPOSITE),  # excludes 0 on the wrong side
        (Interval(0.3, 0.1, 0.5, 40), "fall", V.OPPOSITE),
        (Interval(0.1, -0.1, 0.3, 40), "rise", V.WITHIN_NOISE),
        (Interval(0.3, 0.1, 0.5, 3), "rise", V.TOO_FEW),
    ],
)
def test_each_word_comes_out_of_its_interval(interval, expected, word):
    verdict = V.from_interval(interval, expected, min_n=10)
    assert verdict.word == word and verdict.n == interval.n


def test_a_null_other_than_zero_is_respected():
    assert V.from_interval(Interval(1.2, 1.1, 1.3, 20), "rise", min_n=2, null=1.0).word == V.HOLDS
    assert V.from_interval(Interval(1.2, 0.9, 1.3, 20), "rise", min_n=2, null=1.0).word == V.WITHIN_NOISE


@pytest.mark.parametrize(
    "effect, p, expected, word",
    [(0.2, 0.01, "rise", V.HOLDS), (-0.2, 0.01, "rise", V.OPPOSITE), (0.2, 0.3, "rise", V.WITHIN_NOISE)],
)
def test_each_word_comes_out_of_a_test(effect, p, expected, word):
    assert V.from_test(effect, p, n=12, expected=expected, min_n=3).word == word
    assert V.from_test(effect, p, n=2, expected=expected, min_n=3).word == V.TOO_FEW


def test_refusals_need_reasons_and_words_are_checked():
    assert V.not_testable("the window has no positive effect").reason
    with pytest.raises(ValueError, match="reason"):
        V.not_testable("  ")
    with pytest.raises(ValueError, match="one of"):
        V.Verdict("differs")
    with pytest.raises(ValueError, match="'rise' or 'fall'"):
        V.from_interval(Interval(1, 0.5, 1.5, 9), "drop", min_n=1)


def test_rows_keep_rule_n_and_interval_in_their_own_columns():
    v = V.from_interval(Interval(0.3, 0.1, 0.5, 40), "rise", min_n=10)
    row = V.claim_row("MLPs enrich the subject", "yes (Fig. 4)", "+0.30", v, "interval of the rise excludes 0")
    assert list(row) == V.CLAIM_COLUMNS
    assert row["verdict"] == "holds" and row["n"] == 40 and row["interval"] == "0.30 [0.10, 0.50]"
    assert V.check_row("splice of a perfect transcoder", "exact", "exact", True)["result"] == V.PASSES


def test_direction_names_the_sign():
    assert [V.direction(x) for x in (0.5, -0.5, 0.0)] == ["rise", "fall", "no change"]


def test_summary_is_computed_from_the_verdicts():
    rows = [
        {"claim": "A", "verdict": V.HOLDS},
        {"claim": "B", "verdict": V.OPPOSITE},
        {"claim": "C", "verdict": V.WITHIN_NOISE},
        {"claim": "D", "verdict": V.NOT_TESTABLE},
    ]
    text = V.summary_sentences(rows, "SmolLM2")
    assert text.startswith("On SmolLM2, “A” reproduces.")
    assert "“B” comes out the other way and “C” is within noise." in text
    assert "“D”" in text.split(".")[-2]
    assert V.count_words(rows) == {"holds": 1, "opposite": 1, "within noise": 1, "not testable here": 1, "too few": 0}
    with pytest.raises(ValueError, match="claim_row"):
        V.count_words([{"verdict": "differs"}])


def test_a_run_that_tested_nothing_says_so():
    rows = [{"claim": "A", "verdict": V.TOO_FEW}, {"claim": "B", "verdict": V.NOT_TESTABLE}]
    assert V.summary_sentences(rows, "M") == (
        "On M, no claim could be tested here (a precondition failed or n was too small)."
    )
